"""Who is calling: passwords, tokens, and the identity behind a socket or a request.

Sockets are authenticated here, outside flask-jwt-extended's request decorators,
so this module does everything ``decode_token`` leaves out: the token type, the
blocklist and the user's existence.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
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

REFUSAL_MISSING = AuthRefused("Authentication required", "auth_required")
TOKEN_TYPE_REFRESH = "refresh"


@dataclass(slots=True)
class Identity:
    """A verified caller: what handlers and services need to decide access."""

    user_id: int
    role: str
    expires_at: datetime | None = None
    token_key: str = ""
    claims: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN


@dataclass(slots=True)
class _CachedUser:
    exists: bool
    active: bool
    created_at: datetime | None
    checked_at: float


@dataclass(slots=True)
class _VerifiedToken:
    identity: Identity
    good_until: float
    expires: float


_user_cache: dict[int, _CachedUser] = {}
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


def create_user(email: str, password: str, name: str | None = None, admin: bool = False) -> User:
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


def register(email: str, password: str, name: str | None = None) -> User:
    """A new user, or, when the email is taken, one shaped like it that is not stored.

    The answer must not tell who has an account: the taken email costs the
    same password hash and gets the id the next new user would get. (Logging
    in with the password just chosen still tells, as it must without email
    verification; the login limits bound that probe.)
    """
    try:
        return create_user(email, password, name)
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


def issue_tokens(user: User) -> dict[str, str]:
    claims = {"role": user.role}
    return {
        "accessToken": create_access_token(identity=str(user.id), additional_claims=claims),
        "refreshToken": create_refresh_token(identity=str(user.id), additional_claims=claims),
    }


def issue_access_token(user_id: int) -> str:
    """A fresh access token carrying the user's current role from the database."""
    user = db.session.get(User, user_id)
    if user is None or not user.active:
        raise Unauthenticated("User not found")
    return create_access_token(identity=str(user.id), additional_claims={"role": user.role})


def token_key(claims: dict[str, Any]) -> str:
    """The blocklist key of a token: its ``jti``, or a digest of its claims if it has none.

    Tokens minted by other services may carry no ``jti``; a digest still lets
    exactly that token be revoked.
    """
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        return jti
    canonical = json.dumps(claims, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def is_revoked(key: str) -> bool:
    return db.session.get(RevokedToken, key) is not None


def revoke(claims: dict[str, Any]) -> str:
    """Put a token on the blocklist until it would have expired; returns its key."""
    key = token_key(claims)
    exp = claims.get("exp")
    expires_at = (
        datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else datetime.now(UTC)
    )
    forget_verified_tokens()
    if db.session.get(RevokedToken, key) is None:
        user_id = parse_subject(claims.get("sub"))
        db.session.add(RevokedToken(token_key=key, user_id=user_id, expires_at=expires_at))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
    return key


def purge_expired_revocations(now: datetime | None = None) -> int:
    """Drop blocklist rows whose tokens have expired anyway."""
    now = now or datetime.now(UTC)
    deleted = (
        db.session.query(RevokedToken).filter(RevokedToken.expires_at < now).delete()
    )
    db.session.commit()
    return deleted


def revoked_since(since: datetime) -> list[str]:
    """Keys revoked after ``since``: each node polls this to drop live sockets."""
    return list(
        db.session.scalars(
            select(RevokedToken.token_key).where(RevokedToken.revoked_at > since)
        )
    )


def parse_subject(sub: Any) -> int | None:
    if isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) < 19:
        return int(sub)
    return None


_USER_FACTS = select(User.active, User.created_at).where(User.id == bindparam("user_id"))


def _cached_user(user_id: int) -> _CachedUser:
    """What every connect and notification asks of a user, cached for ``USER_CACHE_SECONDS``.

    A short cache keeps connect storms and notification bursts off the
    database; a disabled or deleted user is refused within its lifetime.
    """
    now = time.monotonic()
    cached = _user_cache.get(user_id)
    if cached is not None and now - cached.checked_at < current_app.config["USER_CACHE_SECONDS"]:
        return cached
    row = db.session.execute(_USER_FACTS, {"user_id": user_id}).first()
    cached = _CachedUser(exists=row is not None, active=bool(row and row.active),
                         created_at=row.created_at if row is not None else None, checked_at=now)
    _user_cache[user_id] = cached
    return cached


def user_is_active(user_id: int) -> bool:
    """Whether the user exists and may sign in (cached, see ``_cached_user``)."""
    cached = _cached_user(user_id)
    return cached.exists and cached.active


def user_created_at(user_id: int) -> datetime | None:
    """When the user was created (it never changes), or None when there is no such user."""
    return _cached_user(user_id).created_at


def forget_cached_user(user_id: int) -> None:
    _user_cache.pop(user_id, None)
    forget_verified_tokens()


def decode_access_token(token: Any) -> dict[str, Any]:
    """Verified claims of an access token, or ``AuthRefused`` saying why not."""
    if token is None or token == "":
        raise REFUSAL_MISSING
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
    if claims.get("type", "access") != "access":
        raise AuthRefused("Invalid token", "invalid_token")
    return claims


def authenticate_token(token: Any) -> Identity:
    """The identity behind an access token, for a socket or a REST call.

    Refuses refresh tokens, revoked tokens, malformed subjects and users that
    do not exist or are disabled. A token that passed is trusted again for
    ``TOKEN_CACHE_SECONDS`` (never past its expiry) without decoding it or
    asking the blocklist: a revocation made on another node takes effect here
    within that time, as it does for that token's live sockets.
    """
    if isinstance(token, str):
        verified = _verified_tokens.get(token)
        if verified is not None:
            if time.monotonic() < verified.good_until and time.time() < verified.expires:
                return verified.identity
            del _verified_tokens[token]
    identity = _verify_token(token)
    if len(_verified_tokens) >= VERIFIED_TOKENS_MAX:
        _verified_tokens.clear()
    _verified_tokens[token] = _VerifiedToken(
        identity, time.monotonic() + current_app.config["TOKEN_CACHE_SECONDS"],
        identity.claims["exp"] + current_app.config["JWT_DECODE_LEEWAY"])
    return identity


def forget_verified_tokens() -> None:
    """After a revocation or a user change, every token is checked afresh."""
    _verified_tokens.clear()


def _verify_token(token: Any) -> Identity:
    claims = decode_access_token(token)
    user_id = parse_subject(claims.get("sub"))
    if user_id is None:
        raise AuthRefused("Invalid token", "invalid_token")
    key = token_key(claims)
    if is_revoked(key):
        raise AuthRefused("Token revoked", "token_revoked")
    if not user_is_active(user_id):
        raise AuthRefused("User not found", "user_not_found")
    role = ROLE_ADMIN if claims.get("role") == ROLE_ADMIN else ROLE_USER
    exp = claims["exp"]
    return Identity(
        user_id=user_id,
        role=role,
        expires_at=datetime.fromtimestamp(exp, UTC),
        token_key=key,
        claims=claims,
    )


def identity_from_jwt(claims: dict[str, Any]) -> Identity:
    """The identity of a REST call whose token flask-jwt-extended already verified."""
    user_id = parse_subject(claims.get("sub"))
    if user_id is None:
        raise Unauthenticated("Invalid token")
    role = ROLE_ADMIN if claims.get("role") == ROLE_ADMIN else ROLE_USER
    exp = claims.get("exp")
    expires_at = datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None
    return Identity(user_id=user_id, role=role, expires_at=expires_at,
                    token_key=token_key(claims), claims=claims)


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
