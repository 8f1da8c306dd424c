"""``/api/users/<userId>/quota``: a user's daily recipient quota; admins set it."""

from flask import Blueprint

from blueprints.common import admin_only, authenticated, json_body
from schemas.quotas import QuotaUpdateSchema
from services.errors import Forbidden
from services.messaging import quotas

quotas_bp = Blueprint("quotas", __name__, url_prefix="/api/users")


@quotas_bp.get("/<user_id:user_id>/quota")
@authenticated
def get_quota(user_id: int, identity):
    if user_id != identity.user_id and not identity.is_admin:
        raise Forbidden("You may only ask about yourself")
    return quotas.describe(user_id)


@quotas_bp.put("/<user_id:user_id>/quota")
@admin_only
def set_quota(user_id: int, identity):
    body = json_body(QuotaUpdateSchema)
    return quotas.set_quota(user_id, body["dailyRecipientQuota"])
