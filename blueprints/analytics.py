"""``/api/analytics``: the REST twins of the live analytics figures."""

from flask import Blueprint

from blueprints.common import admin_only, authenticated
from services.analytics import figures

analytics_bp = Blueprint("analytics", __name__, url_prefix="/api/analytics")


@analytics_bp.get("/dashboard")
@authenticated
def dashboard(identity):
    return figures.figures_for(identity.user_id, figures.DASHBOARD)


@analytics_bp.get("/messages")
@authenticated
def message_figures(identity):
    return figures.figures_for(identity.user_id, figures.MESSAGES)


@analytics_bp.get("/usage")
@authenticated
def usage(identity):
    return figures.figures_for(identity.user_id, figures.USAGE)


@analytics_bp.get("/global")
@admin_only
def global_figures(identity):
    return figures.global_stats()
