"""``/api/auth``: register, log in, refresh, log out."""

from flask import Blueprint, current_app, request
from flask_limiter.util import get_remote_address

from blueprints.common import authenticated, bearer_identity, json_body
from extensions import limiter
from schemas.auth import LoginSchema, RegisterSchema, UserSchema
from schemas.common import schema_instance
from services import auth
from services.errors import Forbidden

auth_bp = Blueprint("auth", __name__, url_prefix="/api/auth")


def _login_account() -> str:
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return email.strip().lower()[:254] if isinstance(email, str) else ""


def _address_and_account() -> str:
    return f"{get_remote_address()}:{_login_account()}"


def _account() -> str:
    return f"account:{_login_account()}"


def _address() -> str:
    return f"address:{get_remote_address()}"


def _failed(response) -> bool:
    """Only refusals count: a user who logs in often is not guessing."""
    return response.status_code == 401


@auth_bp.post("/register")
@limiter.limit(lambda: current_app.config["REGISTER_RATE_LIMIT"])
def register():
    """``201 {user}`` even for a taken email: the answer tells no one who has an account."""
    if not current_app.config["REGISTRATION_ENABLED"]:
        raise Forbidden("Registration is disabled")
    body = json_body(RegisterSchema)
    user = auth.register(body["email"], body["password"], name=body["name"])
    return {"user": schema_instance(UserSchema).dump(user)}, 201


# Failed logins are limited three ways: per address and account (guessing one
# password), per account from every address (a botnet on one account) and per
# address on every account (one address spraying common passwords).
@auth_bp.post("/login")
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], key_func=_address_and_account,
               deduct_when=_failed)
@limiter.limit(lambda: current_app.config["LOGIN_ACCOUNT_RATE_LIMIT"], key_func=_account,
               deduct_when=_failed)
@limiter.limit(lambda: current_app.config["LOGIN_ADDRESS_RATE_LIMIT"], key_func=_address,
               deduct_when=_failed)
def login():
    body = json_body(LoginSchema)
    user = auth.verify_credentials(body["email"], body["password"])
    return {**auth.issue_tokens(user), "user": schema_instance(UserSchema).dump(user)}


@auth_bp.post("/refresh")
def refresh():
    identity = bearer_identity(auth.REFRESH_ONLY)
    return {"accessToken": auth.issue_access_token(identity)}


@auth_bp.post("/logout")
def logout():
    """Revoke the presented token's session (access or refresh token): both tokens of the
    pair and every access token refreshed from it; their live sockets are dropped."""
    auth.revoke_session(bearer_identity(auth.ANY_TOKEN))
    return {"revoked": True}


@auth_bp.get("/me")
@authenticated
def me(identity):
    user = auth.get_user(identity.user_id)
    return {"user": schema_instance(UserSchema).dump(user), "role": identity.role}
