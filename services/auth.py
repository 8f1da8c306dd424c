"""Who is calling: passwords, tokens, and the identity behind a socket or a request.

Every token, on a socket or a REST call (refresh and logout included), is
checked here and only here, outside flask-jwt-extended's request decorators:
one decoder, so a token's session key is computed the same way on every path.
Besides the signature and expiry this checks what ``decode_token`` leaves out:
the token type, the session blocklist, and that the account still exists, is
enabled, has not ended its sessions since, and still holds the role claimed.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt as pyjwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from extensions import db
from models import RevokedToken, User
from models.user import ROLE_ADMIN, ROLE_USER
from services.errors import AuthRefused, Conflict, Unauthenticated

TOKEN_TYPE_ACCESS = "access"
TOKEN_TYPE_REFRESH = "refresh"
ACCESS_ONLY = frozenset({TOKEN_TYPE_ACCESS})
REFRESH_ONLY = frozenset({TOKEN_TYPE_REFRESH})
ANY_TOKEN = frozenset({TOKEN_TYPE_ACCESS, TOKEN_TYPE_REFRESH})
# The login session shared by an access/refresh pair (OpenID Connect's ``sid`` claim).
SESSION_CLAIM = "sid"
# The account's ``session_version`` when the hub issued the token.
SESSION_VERSION_CLAIM = "session_version"
# Blocklist keys: a revoked session, and a signal that an account changed (see
# ``announce_account_change``). Both live in ``revoked_tokens``, which every node polls.
SESSION_KEY_PREFIX = "session:"
ACCOUNT_KEY_PREFIX = "account:"
KEY_MAX_LENGTH = 128
ACCOUNT_SIGNAL_LIFETIME = timedelta(minutes=5)


@dataclass(slots=True)
class Identity:
    """A verified caller: what handlers and services need to decide access."""

    user_id: int
    role: str
    expires_at: datetime | None = None
    session_key: str = ""
    claims: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN


@dataclass(slots=True)
class _CachedUser:
    exists: bool
    active: bool
    role: str
    session_version: int
    created_at: datetime | None
    checked_at: float


@dataclass(slots=True)
class _VerifiedToken:
    identity: Identity
    good_until: float
    expires: float


_user_cache: dict[int, _CachedUser] = {}
_created_at_cache: dict[int, datetime] = {}
_NO_SUCH_USER = _CachedUser(exists=False, active=False, role=ROLE_USER, session_version=0,
                            created_at=None, checked_at=0.0)
_verified_tokens: dict[str, _VerifiedToken] = {}
VERIFIED_TOKENS_MAX = 10_000


def _hasher() -> PasswordHasher:
    config = current_app.config
    return PasswordHasher(
        time_cost=config["ARGON2_TIME_COST"],
        memory_cost=config["ARGON2_MEMORY_COST"],
        parallelism=1,
    )


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def get_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalise_email(email)))


def create_user(email: str, password: str, *, name: str | None = None,
                admin: bool = False) -> User:
    """Store a new user; ``Conflict`` when the email is taken."""
    user = User(
        email=normalise_email(email),
        password_hash=hash_password(password),
        name=name,
        role=ROLE_ADMIN if admin else ROLE_USER,
    )
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("A user with this email already exists") from None
    return user


def register(email: str, password: str, *, name: str | None = None) -> User:
    """A new user, or, when the email is taken, one shaped like it that is not stored.

    The answer must not tell who has an account: the taken email costs the
    same password hash and gets the id the next new user would get. (Logging
    in with the password just chosen still tells, as it must without email
    verification; the login limits bound that probe.)
    """
    try:
        return create_user(email, password, name=name)
    except Conflict:
        next_id = (db.session.scalar(select(func.max(User.id))) or 0) + 1
        return User(id=next_id, email=normalise_email(email), name=name, role=ROLE_USER,
                    created_at=datetime.now(UTC))


def verify_credentials(email: str, password: str) -> User:
    """The user for these credentials; one vague refusal for every failure."""
    user = get_user_by_email(email)
    hasher = _hasher()
    if user is None or not user.active:
        # Spend the same effort as a real check, so timing does not reveal who exists.
        hasher.hash(password)
        raise Unauthenticated("Invalid email or password")
    try:
        hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise Unauthenticated("Invalid email or password") from None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
        db.session.commit()
    return user


def _session_claims(user: User, session_id: str) -> dict[str, Any]:
    return {"role": user.role, SESSION_CLAIM: session_id,
            SESSION_VERSION_CLAIM: user.session_version}


def issue_tokens(user: User) -> dict[str, str]:
    """A new login session: an access and a refresh token sharing one ``sid``."""
    claims = _session_claims(user, uuid.uuid4().hex)
    return {
        "accessToken": create_access_token(identity=str(user.id), additional_claims=claims),
        "refreshToken": create_refresh_token(identity=str(user.id), additional_claims=claims),
    }


def issue_access_token(refresh: Identity) -> str:
    """A fresh access token in the refresh token's session, with the account's current role.

    Keeping the session id means logging out with any token of the session,
    however often it was refreshed, revokes all of them.
    """
    user = db.session.get(User, refresh.user_id)
    if user is None or not user.active:
        raise Unauthenticated("User not found")
    session_id = refresh.session_key.removeprefix(SESSION_KEY_PREFIX)
    return create_access_token(identity=str(user.id),
                               additional_claims=_session_claims(user, session_id))


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def session_key(claims: dict[str, Any]) -> str:
    """The blocklist key of the session a token belongs to.

    The session is the token's ``sid`` claim; a token without one (minted by
    another service sharing the key) is a session of its own, named by its
    ``jti`` or, without that either, by a digest of its claims exactly as
    decoded. Every path computes it from the same decoded claims, so what
    logout revokes is what every check looks up.
    """
    sid = claims.get(SESSION_CLAIM)
    if not (isinstance(sid, str) and sid):
        jti = claims.get("jti")
        if isinstance(jti, str) and jti:
            sid = "jti:" + jti
        else:
            canonical = json.dumps(claims, sort_keys=True, separators=(",", ":"), default=str)
            sid = _digest(canonical)
    key = SESSION_KEY_PREFIX + sid
    return key if len(key) <= KEY_MAX_LENGTH else SESSION_KEY_PREFIX + _digest(sid)


def is_revoked(key: str) -> bool:
    return db.session.get(RevokedToken, key) is not None


def revoke_session(identity: Identity) -> str:
    """Log out: every token of the presented token's session is refused from now on.

    The row is kept until the last token of the session has expired: the
    refresh token issued at login expires within ``JWT_REFRESH_TOKEN_EXPIRES``
    of now, and no access token of the session can be issued after this.
    """
    config = current_app.config
    now = datetime.now(UTC)
    lifetime = max(config["JWT_REFRESH_TOKEN_EXPIRES"], config["JWT_ACCESS_TOKEN_EXPIRES"])
    expires_at = max(identity.expires_at or now, now + lifetime)
    _add_revocation(identity.session_key, identity.user_id, expires_at)
    forget_verified_tokens()
    return identity.session_key


def _add_revocation(key: str, user_id: int | None, expires_at: datetime) -> None:
    if db.session.get(RevokedToken, key) is not None:
        return
    db.session.add(RevokedToken(token_key=key, user_id=user_id, expires_at=expires_at))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()


def announce_account_change(user_id: int) -> None:
    """Tell every node that this account changed (deleted, disabled, role), in the caller's
    transaction: the signal commits with the change itself.

    Nodes poll ``revoked_tokens`` every second to drop revoked sockets; an
    ``account:`` row makes them forget what they cached about the user and
    check that user's sockets again. It works with or without a message queue,
    from the CLI as from a node, and is kept only as long as nodes look back.
    """
    db.session.add(RevokedToken(
        token_key=f"{ACCOUNT_KEY_PREFIX}{user_id}:{uuid.uuid4().hex}", user_id=user_id,
        expires_at=datetime.now(UTC) + ACCOUNT_SIGNAL_LIFETIME))


def purge_expired_revocations(now: datetime | None = None) -> int:
    """Drop blocklist rows whose tokens have expired anyway."""
    now = now or datetime.now(UTC)
    deleted = (
        db.session.query(RevokedToken).filter(RevokedToken.expires_at < now).delete()
    )
    db.session.commit()
    return deleted


def revoked_since(since: datetime) -> dict[str, int | None]:
    """Keys revoked after ``since`` and their users: each node polls this to act on live sockets."""
    return dict(db.session.execute(
        select(RevokedToken.token_key, RevokedToken.user_id)
        .where(RevokedToken.revoked_at > since)
    ).tuples().all())


def changed_accounts(keys: dict[str, int | None]) -> set[int]:
    """The users named by ``account:`` signals among revocation keys."""
    return {user_id for key, user_id in keys.items()
            if key.startswith(ACCOUNT_KEY_PREFIX) and user_id is not None}


def parse_subject(sub: Any) -> int | None:
    if isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) < 19:
        return int(sub)
    return None


_USER_FACTS = select(User.active, User.role, User.session_version, User.created_at).where(
    User.id == bindparam("user_id"))


def _cached_user(user_id: int) -> _CachedUser:
    """What every connect and notification asks of a user, cached for ``USER_CACHE_SECONDS``.

    A short cache keeps connect storms and notification bursts off the
    database. Changes made through ``services.accounts`` reach every node's
    cache within a second (``announce_account_change``); only changes made by
    hand in SQL wait for the cache to expire.
    """
    now = time.monotonic()
    cached = _user_cache.get(user_id)
    if cached is not None and now - cached.checked_at < current_app.config["USER_CACHE_SECONDS"]:
        return cached
    row = db.session.execute(_USER_FACTS, {"user_id": user_id}).first()
    if row is None:
        # Not remembered: SQLite gives the next new account the highest id again.
        _user_cache.pop(user_id, None)
        return _NO_SUCH_USER
    cached = _CachedUser(exists=True, active=bool(row.active), role=row.role,
                         session_version=row.session_version, created_at=row.created_at,
                         checked_at=now)
    _user_cache[user_id] = cached
    return cached


def user_created_at(user_id: int) -> datetime | None:
    """When the user was created, or None when there is no such user.

    What notifications ask on every notify; it never changes for an account,
    so it is kept until the account changes. A query of its own, apart from
    the session facts: notifications need nothing else of the account.
    """
    created = _created_at_cache.get(user_id)
    if created is None:
        created = db.session.scalar(select(User.created_at).where(User.id == user_id))
        if created is not None:
            _created_at_cache[user_id] = created
    return created


def forget_cached_user(user_id: int) -> None:
    _user_cache.pop(user_id, None)
    _created_at_cache.pop(user_id, None)
    forget_verified_tokens()


def decode_token(token: Any, token_types: frozenset[str] = ACCESS_ONLY) -> dict[str, Any]:
    """Verified claims of a token of one of ``token_types``, or ``AuthRefused`` saying why not."""
    if token is None or token == "":
        # A new exception each time: raising a shared one again grows its traceback,
        # which kept the frames of every refused connect alive.
        raise AuthRefused("Authentication required", "auth_required")
    if not isinstance(token, str) or len(token) > 8192:
        raise AuthRefused("Invalid token", "invalid_token")
    config = current_app.config
    try:
        claims = pyjwt.decode(
            token,
            config["JWT_SECRET_KEY"],
            algorithms=config["JWT_DECODE_ALGORITHMS"],
            leeway=config["JWT_DECODE_LEEWAY"],
            options={"require": ["exp", "sub"]},
        )
    except pyjwt.ExpiredSignatureError:
        raise AuthRefused("Token expired", "token_expired") from None
    except pyjwt.PyJWTError:
        raise AuthRefused("Invalid token", "invalid_token") from None
    if claims.get("type", TOKEN_TYPE_ACCESS) not in token_types:
        raise AuthRefused("Invalid token", "invalid_token")
    return claims


def authenticate_token(token: Any, token_types: frozenset[str] = ACCESS_ONLY) -> Identity:
    """The identity behind a token: an access token for a socket or a REST call (the
    default), a refresh token to refresh, either to log out.

    Refuses other token types, revoked sessions, malformed subjects, accounts
    that do not exist or are disabled, and tokens issued before the account
    ended its sessions. An access token that passed is trusted again for
    ``TOKEN_CACHE_SECONDS`` (never past its expiry) without decoding it or
    asking the blocklist; every node empties that cache when it sees a
    revocation or an account change, which it polls for every second.
    """
    if token_types != ACCESS_ONLY:
        return identity_from_claims(decode_token(token, token_types))
    if isinstance(token, str):
        verified = _verified_tokens.get(token)
        if verified is not None:
            if time.monotonic() < verified.good_until and time.time() < verified.expires:
                return verified.identity
            del _verified_tokens[token]
    identity = identity_from_claims(decode_token(token))
    if len(_verified_tokens) >= VERIFIED_TOKENS_MAX:
        _verified_tokens.clear()
    _verified_tokens[token] = _VerifiedToken(
        identity, time.monotonic() + current_app.config["TOKEN_CACHE_SECONDS"],
        identity.claims["exp"] + current_app.config["JWT_DECODE_LEEWAY"])
    return identity


def forget_verified_tokens() -> None:
    """After a revocation or a user change, every token is checked afresh."""
    _verified_tokens.clear()


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    """The identity for verified claims, checked against the account as it is now.

    Also how a live socket is checked again after its account changed. The
    role is the token's claim only while the account still holds it: a
    demoted admin's admin token counts as a user's.
    """
    user_id = parse_subject(claims.get("sub"))
    if user_id is None:
        raise AuthRefused("Invalid token", "invalid_token")
    key = session_key(claims)
    if is_revoked(key):
        raise AuthRefused("Token revoked", "token_revoked")
    account = _cached_user(user_id)
    if not (account.exists and account.active):
        raise AuthRefused("User not found", "user_not_found")
    if not _issued_to_this_account(claims, account):
        raise AuthRefused("Token revoked", "token_revoked")
    claims_admin = claims.get("role") == ROLE_ADMIN
    role = ROLE_ADMIN if claims_admin and account.role == ROLE_ADMIN else ROLE_USER
    return Identity(
        user_id=user_id,
        role=role,
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        session_key=key,
        claims=claims,
    )


def _issued_to_this_account(claims: dict[str, Any], account: _CachedUser) -> bool:
    """Whether the token belongs to the account as it is now, not to an ended session.

    The hub's tokens carry the account's ``session_version``, which must still
    match: disabling an account sets it to the Unix time of the disable. A
    token minted elsewhere carries none and must have been issued (``iat``)
    after the last disable. And a token issued before its account was created
    belonged to a deleted account whose id was reused (SQLite reuses the
    highest id); a token without ``iat`` cannot be dated and passes that check.
    """
    version = claims.get(SESSION_VERSION_CLAIM)
    issued = claims.get("iat")
    if isinstance(issued, bool) or not isinstance(issued, int | float):
        issued = None
    if version is None:
        if account.session_version and (issued is None or issued <= account.session_version):
            return False
    elif type(version) is not int or version != account.session_version:
        return False
    created = account.created_at
    if issued is None or created is None:
        return True
    return issued >= math.floor(created.timestamp()) - current_app.config["JWT_DECODE_LEEWAY"]


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise Unauthenticated("User not found")
    return user


DEMO_ADMIN_EMAIL = "admin@example.com"


def ensure_demo_admin(instance_path: str) -> dict[str, str]:
    """First run of a development checkout: a demo admin whose password is printed once.

    The password is also kept (owner-readable only) in the instance folder; with
    any user already present nothing is created.
    """
    import os
    import secrets

    path = os.path.join(instance_path, "demo-admin.txt")
    if db.session.scalar(select(func.count()).select_from(User)):
        return {"email": DEMO_ADMIN_EMAIL, "file": path}
    password = secrets.token_urlsafe(12)
    create_user(DEMO_ADMIN_EMAIL, password, name="Demo admin", admin=True)
    os.makedirs(instance_path, exist_ok=True)
    with open(path, "w") as handle:
        handle.write(f"{DEMO_ADMIN_EMAIL}\n{password}\n")
    os.chmod(path, 0o600)
    return {"email": DEMO_ADMIN_EMAIL, "password": password, "file": path}
