"""Command-line tools: ``flask users create EMAIL [--admin] [--password P]``."""

import click
from flask import Blueprint, current_app

from services import auth

cli_bp = Blueprint("users", __name__, cli_group="users")


@cli_bp.cli.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Prompted for when omitted.")
@click.option("--name", default=None, help="Display name.")
def create_user(email: str, admin: bool, password: str, name: str | None) -> None:
    """Create a user (an admin with --admin)."""
    user = auth.create_user(email, password, name=name, admin=admin)
    click.echo(f"created {'admin' if admin else 'user'} {user.email} (id {user.id})")


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
