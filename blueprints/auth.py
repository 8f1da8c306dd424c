"""``/api/auth``: register, log in, refresh, log out."""

from flask import Blueprint, current_app
from flask_jwt_extended import get_jwt, jwt_required

from blueprints.common import authenticated, current_identity, json_body
from schemas.auth import LoginSchema, RegisterSchema, UserSchema
from services import auth
from services.errors import Forbidden

auth_bp = Blueprint("auth", __name__, url_prefix="/api/auth")


@auth_bp.post("/register")
def register():
    if not current_app.config["REGISTRATION_ENABLED"]:
        raise Forbidden("Registration is disabled")
    body = json_body(RegisterSchema())
    user = auth.create_user(body["email"], body["password"], body["name"])
    return {"user": UserSchema().dump(user)}, 201


@auth_bp.post("/login")
def login():
    body = json_body(LoginSchema())
    user = auth.verify_credentials(body["email"], body["password"])
    return {**auth.issue_tokens(user), "user": UserSchema().dump(user)}


@auth_bp.post("/refresh")
@jwt_required(refresh=True)
def refresh():
    identity = current_identity()
    return {"accessToken": auth.issue_access_token(identity.user_id)}


@auth_bp.post("/logout")
@jwt_required(verify_type=False)
def logout():
    """Revoke the presented token (access or refresh); its live sockets are dropped."""
    auth.revoke(get_jwt())
    return {"revoked": True}


@auth_bp.get("/me")
@authenticated
def me(identity):
    return {"user": UserSchema().dump(auth.get_user(identity.user_id)), "role": identity.role}
