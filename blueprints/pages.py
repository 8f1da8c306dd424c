"""The server-rendered pages: the testSocket client and the live dashboard.

They are plain HTML; everything they show comes from the API with the token
the person signs in with. The statuses they count and filter by are the
models' own, so a status added there shows up on both pages.
"""

from flask import Blueprint, render_template

from models.message import MessageStatus, RecipientStatus

pages_bp = Blueprint("pages", __name__)


@pages_bp.get("/testSocket")
def test_socket():
    return render_template("test_socket.html", recipient_statuses=list(RecipientStatus))


@pages_bp.get("/dashboard")
def dashboard():
    return render_template("dashboard.html", message_statuses=list(MessageStatus))
