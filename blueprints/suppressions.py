"""``/api/suppressions``: the numbers never sent to (admins); ``/api/phones``: erasure."""

from flask import Blueprint

from blueprints.common import admin_only, json_body, query_args
from schemas.inbound import (
    SuppressionCreateSchema,
    SuppressionDeleteQuerySchema,
    SuppressionListQuerySchema,
)
from services.messaging import erasure, suppressions

suppressions_bp = Blueprint("suppressions", __name__, url_prefix="/api")


@suppressions_bp.get("/suppressions")
@admin_only
def list_suppressions(identity):
    query = query_args(SuppressionListQuerySchema)
    return suppressions.list_entries(phone=query["phone"], sender=query["sender"],
                                     limit=query["limit"], before=query["before"])


@suppressions_bp.post("/suppressions")
@admin_only
def add_suppression(identity):
    body = json_body(SuppressionCreateSchema)
    return suppressions.add(body["phone"], sender=body["sender"], reason=body["reason"]), 201


@suppressions_bp.delete("/suppressions/<phone>")
@admin_only
def remove_suppression(phone: str, identity):
    query = query_args(SuppressionDeleteQuerySchema)
    return {"removed": suppressions.remove(phone, sender=query["sender"])}


@suppressions_bp.delete("/phones/<phone>")
@admin_only
def erase_phone(phone: str, identity):
    return erasure.erase_phone(phone)
