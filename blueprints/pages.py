"""The server-rendered pages: the testSocket client and the live dashboard.

They are plain HTML; everything they show comes from the API with the token
the person signs in with.
"""

from flask import Blueprint, render_template

pages_bp = Blueprint("pages", __name__)


@pages_bp.get("/testSocket")
def test_socket():
    return render_template("test_socket.html")


@pages_bp.get("/dashboard")
def dashboard():
    return render_template("dashboard.html")
