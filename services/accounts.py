"""Accounts after sign-up: delete, disable, enable, promote and demote.

Each change commits together with an ``account:`` signal
(``auth.announce_account_change``) that every node polls each second: each
forgets what it cached about the user, so REST calls are judged on the account
as it is now, and drops or re-checks the user's live sockets. The process
that made the change forgets at once. Disabling also moves the account's
``session_version`` on, so the tokens issued before stay refused after
``enable``: a stolen refresh token does not outlive a disable.
"""

from __future__ import annotations

import time

from sqlalchemy import delete

from extensions import db
from models import IdempotencyRecord, User
from models.user import ROLE_ADMIN, ROLE_USER
from services import auth
from services.errors import NotFound


def find_user(reference: str) -> User:
    """The user named by an email or a numeric id, as an operator types either."""
    text = reference.strip()
    if text.isascii() and text.isdigit() and len(text) < 19:
        user = db.session.get(User, int(text))
    else:
        user = auth.get_user_by_email(text)
    if user is None:
        raise NotFound(f"No user {reference!r}")
    return user


def _commit_change(user_id: int) -> None:
    auth.announce_account_change(user_id)
    db.session.commit()
    auth.forget_cached_user(user_id)


def delete_user(user: User) -> None:
    """Delete the account with everything it owns (messages, notifications, connections).

    Its remembered idempotent responses go too: SQLite may give the next new
    account the same id, and it must not be answered with this one's.
    """
    db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.user_id == user.id))
    db.session.execute(delete(User).where(User.id == user.id))
    db.session.expunge(user)
    _commit_change(user.id)


def disable_user(user: User) -> None:
    """No sign-in, no token and no socket for this account until it is enabled again.

    ``session_version`` becomes the Unix time of the disable (always larger than
    before): tokens minted elsewhere, without the claim, pass only when issued
    after it (``auth._issued_to_this_account``).
    """
    user.active = False
    user.session_version = max(int(time.time()), user.session_version + 1)
    _commit_change(user.id)


def enable_user(user: User) -> None:
    """Allow sign-in again; tokens issued before the account was disabled stay refused."""
    user.active = True
    _commit_change(user.id)


def set_role(user: User, admin: bool) -> None:
    """Promote to admin or demote to user; live sockets keep only the rooms the role allows.

    A token carries the role it was issued with and counts as an admin's only
    while the account is one (``auth.identity_from_claims``): a demotion takes
    effect on tokens already issued, a promotion with the next token.
    """
    user.role = ROLE_ADMIN if admin else ROLE_USER
    _commit_change(user.id)
