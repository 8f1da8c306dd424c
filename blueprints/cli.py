"""Command-line tools: ``flask users create EMAIL [--admin]``, ``flask users demo``,
``flask users quota EMAIL [--daily N | --default]``,
``flask users delete|disable|enable|promote|demote USER`` and
``flask notify USER --title ... --message ...`` (emits through the message queue).

``make admin``, ``make notify`` and ``make users`` run them without an
activated virtualenv."""

import click
from flask import Blueprint, current_app
from sqlalchemy.exc import DBAPIError

from models import User
from schemas.auth import RegisterSchema
from schemas.common import load_or_raise
from schemas.notifications import NOTIFICATION_TYPES, NotifySchema
from schemas.quotas import MAX_DAILY_RECIPIENT_QUOTA
from services import accounts, auth
from services.errors import AppError
from services.messaging import quotas

cli_bp = Blueprint("users", __name__, cli_group="users")
notify_cli_bp = Blueprint("notify_cli", __name__, cli_group=None)


@cli_bp.cli.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Prompted for when omitted.")
@click.option("--name", default=None, help="Display name.")
def create_user(email: str, admin: bool, password: str, name: str | None) -> None:
    """Create a user (an admin with --admin), by the rules of ``POST /api/auth/register``."""
    try:
        account = load_or_raise(RegisterSchema, {"email": email, "password": password,
                                                 "name": name})
        user = auth.create_user(account["email"], account["password"], name=account["name"],
                                admin=admin)
    except AppError as refused:
        raise click.ClickException(_explain(refused)) from None
    except DBAPIError as failed:
        reason = str(failed.orig).strip().splitlines()[0]
        raise click.ClickException(f"the database refused: {reason} (is DATABASE_URL right, "
                                   "and did `flask db upgrade` run?)") from None
    click.echo(f"created {'admin' if admin else 'user'} {user.email} (id {user.id})")


def _explain(refused: AppError) -> str:
    """One line per invalid field, as the API's ``details`` lists them."""
    if not isinstance(refused.details, dict):
        return refused.message
    return "\n".join(f"{field}: {' '.join(map(str, problems))}"
                     for field, problems in refused.details.items())


@cli_bp.cli.command("demo")
def demo_admin() -> None:
    """On a database with no users, create a demo admin and print how to log in."""
    credentials = auth.ensure_demo_admin(current_app.instance_path)
    base = f"http://{current_app.config['HOST']}:{current_app.config['PORT']}"
    click.echo(f"\n  Open {base}/testSocket and log in as {credentials['email']}")
    if credentials.get("password"):
        click.echo(f"  password: {credentials['password']}   (shown once; also in "
                   f"{credentials['file']})\n")
    else:
        click.echo(f"  (password in {credentials['file']}, or create a user with "
                   f"`flask users create EMAIL --admin`)\n")


@cli_bp.cli.command("quota")
@click.argument("email")
@click.option("--daily", type=click.IntRange(0, MAX_DAILY_RECIPIENT_QUOTA), default=None,
              help="Recipients this user may send to per UTC day.")
@click.option("--default", "use_default", is_flag=True,
              help="Give the user DAILY_RECIPIENT_QUOTA again.")
def user_quota(email: str, daily: int | None, use_default: bool) -> None:
    """Show a user's daily recipient quota, or set it with --daily N or --default."""
    if daily is not None and use_default:
        raise click.UsageError("use either --daily or --default")
    user = auth.get_user_by_email(email)
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    if daily is not None or use_default:
        quota = quotas.set_quota(user.id, daily)
    else:
        quota = quotas.describe(user.id)
    kind = "the default" if quota["isDefault"] else "own quota"
    click.echo(f"{user.email}: {quota['dailyRecipientQuota']} recipients per UTC day ({kind}), "
               f"{quota['usedToday']} used today")


def _account(reference: str) -> User:
    try:
        return accounts.find_user(reference)
    except AppError as error:
        raise click.ClickException(error.message) from None


EVERY_NODE = "on every node within about a second"


@cli_bp.cli.command("delete")
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user(user: str, yes: bool) -> None:
    """Delete USER (email or id) with their messages and notifications."""
    account = _account(user)
    if not yes:
        click.confirm(f"Delete {account.email} (id {account.id}) with all their messages "
                      "and notifications?", abort=True)
    accounts.delete_user(account)
    click.echo(f"deleted user {account.email} (id {account.id}); their tokens are refused "
               f"and their sockets closed {EVERY_NODE}")


@cli_bp.cli.command("disable")
@click.argument("user")
def disable_user(user: str) -> None:
    """Disable USER (email or id): no sign-in, and every session of theirs ends for good."""
    account = _account(user)
    accounts.disable_user(account)
    click.echo(f"disabled {account.email} (id {account.id}); their tokens are refused and "
               f"their sockets closed {EVERY_NODE}")


@cli_bp.cli.command("enable")
@click.argument("user")
def enable_user(user: str) -> None:
    """Enable USER (email or id) again; they sign in anew (old tokens stay refused)."""
    account = _account(user)
    accounts.enable_user(account)
    click.echo(f"enabled {account.email} (id {account.id})")


@cli_bp.cli.command("promote")
@click.argument("user")
def promote_user(user: str) -> None:
    """Give USER (email or id) the admin role, from their next token on."""
    account = _account(user)
    accounts.set_role(account, admin=True)
    click.echo(f"{account.email} (id {account.id}) is an admin from their next token "
               "(log in, or refresh)")


@cli_bp.cli.command("demote")
@click.argument("user")
def demote_user(user: str) -> None:
    """Take the admin role from USER (email or id), on the tokens they already hold too."""
    account = _account(user)
    accounts.set_role(account, admin=False)
    click.echo(f"{account.email} (id {account.id}) is a user; admin routes and rooms are "
               f"closed to them {EVERY_NODE}")


@notify_cli_bp.cli.command("notify")
@click.argument("user")
@click.option("--title", required=True)
@click.option("--message", required=True)
@click.option("--type", "kind", default="system", type=click.Choice(NOTIFICATION_TYPES))
@click.option("--data", default=None, help="JSON attached to the notification.")
def notify(user: str, title: str, message: str, kind: str, data: str | None) -> None:
    """Store a notification for USER (email or id) and emit it through the message queue,
    by the rules of ``POST /api/socket/notify/<userId>``."""
    import json

    from services.notifications import notify_user

    try:
        attached = json.loads(data) if data else None
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--data") from None
    account = _account(user)
    try:
        body = load_or_raise(NotifySchema, {"title": title, "message": message, "type": kind,
                                            "data": attached})
    except AppError as refused:
        raise click.ClickException(_explain(refused)) from None
    payload, _ = notify_user(account.id, title=body["title"], message=body["message"],
                             type=body["type"], data=body["data"])
    click.echo(json.dumps(payload))
    if not current_app.config["SOCKETIO_MESSAGE_QUEUE"]:
        click.echo("stored, but not sent live: without SOCKETIO_MESSAGE_QUEUE only the hub's "
                   "own process reaches its sockets; the user sees it on their next fetch",
                   err=True)
