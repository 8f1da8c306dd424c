"""The application factory, and ``python app.py`` to serve it with gevent.

``create_app`` is the one place that wires the hub: settings, extensions,
blueprints, the Socket.IO namespace and error handlers. ``flask run`` is
refused: Werkzeug's server would serve the REST routes without the node
(dispatcher, heartbeats, analytics) or the hub's WebSocket transport.
"""

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import contextlib
import logging
import os
import shlex
from pathlib import Path

import click
from flask import Flask
from flask.cli import run_command
from flask_cors import CORS
from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine

from config import INSTANCE_DIR, Config, engine_options, get_config, settings_in_effect
from extensions import db, jwt, limiter, socketio
from services.messaging.pricing import install_prices
from services.transport.json_input import RequestJSONProvider

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, connection_record) -> None:
    """WAL lets readers run beside the writer; the busy timeout rides out short locks."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def _create_sqlite_file(url: str) -> None:
    """An SQLite file holds password hashes and everyone's messages: its owner's only.

    SQLite would create a missing file with the umask's mode (world-readable
    under the usual 022), and its ``-wal`` and ``-shm`` files copy the
    database's mode; so the hub creates the file itself, 0600, in a folder it
    creates 0700.
    """
    parsed = make_url(url)
    if (parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:")
            or parsed.query.get("uri")):  # a ``file:`` URI names its own options
        return
    path = Path(parsed.database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def create_app(config: str | type[Config] | None = None, **overrides) -> Flask:
    """Build the hub. ``config`` names an environment or is a settings class."""
    from blueprints.common import ApiRequest

    _refuse_flask_run()
    settings = config if isinstance(config, type) else get_config(config)
    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    app.request_class = ApiRequest
    app.config.from_object(settings)
    app.config.update(overrides)
    app.json = RequestJSONProvider(app)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], pool_size=app.config["DATABASE_POOL_SIZE"],
        max_overflow=app.config["DATABASE_MAX_OVERFLOW"]))
    _create_sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])

    _configure_logging(app)
    install_prices(app)
    db.init_app(app)
    if click.get_current_context(silent=True) is not None:
        install_migrations(app)
    jwt.init_app(app)
    _message_queue_channel(app)
    # Deployments sharing one Redis keep their own REST rate-limit counts.
    app.config.setdefault("RATELIMIT_KEY_PREFIX", app.config["SOCKETIO_CHANNEL"] or "")
    limiter.init_app(app)
    if app.config["CORS_ALLOWED_ORIGINS"]:
        CORS(app, resources={r"/api/*": {"origins": app.config["CORS_ALLOWED_ORIGINS"]}})
    _init_socketio(app)
    _trust_proxies(app)
    _register_blueprints(app)
    return app


def install_migrations(app: Flask) -> None:
    """Bind Flask-Migrate, which the ``flask db`` commands and scripts that migrate need.

    Importing it imports Alembic: about 0.3 s of CPU, an eighth of a start, that a
    serving process never uses. ``create_app`` binds it under the ``flask`` command
    only; a script that migrates an app it built itself calls this first.
    """
    from flask_migrate import Migrate

    Migrate(app, db, directory=str(MIGRATIONS_DIR))


def _refuse_flask_run() -> None:
    """``flask run`` reported ready and never sent a message: say what to run instead."""
    context = click.get_current_context(silent=True)
    if context is not None and context.command is run_command:
        raise click.ClickException(
            "`flask run` would serve the API without the hub's node (delivery dispatcher, "
            "heartbeats, analytics) or its WebSocket transport. Start the hub with "
            "`make run` (installs, migrates, serves) or `.venv/bin/python app.py`; "
            "in production, gunicorn (docs/deployment.md).")


def log_settings(app: Flask) -> None:
    """One line with every setting in effect, secrets masked: what this process runs with.

    Values are quoted as a shell would (``SMS_HELP_TEXT='Reply STOP to unsubscribe.'``), so
    the line splits back into its settings with ``shlex.split``.
    """
    shown = " ".join(f"{name}={shlex.quote(str(value))}"
                     for name, value in settings_in_effect(app.config).items())
    log.info("settings in effect: %s", shown)


def _trust_proxies(app: Flask) -> None:
    """Outermost layer: every part of the hub sees the client behind trusted proxies."""
    from services.transport.proxies import ProxyPolicy

    policy = ProxyPolicy(app.config["TRUST_PROXY_HEADERS"])
    app.extensions["hub_proxies"] = policy
    app.wsgi_app = policy.wrap(app.wsgi_app)


def _init_socketio(app: Flask) -> None:
    from blueprints.socket_events import HubNamespace
    from services.messaging.recipient_batches import batches
    from services.realtime import snapshots
    from services.transport.install import install_transport

    server = install_transport(app, socketio)
    server.register_namespace(HubNamespace(app))
    snapshots.budgets.configure(app.config["SNAPSHOT_RATE"], app.config["SNAPSHOT_BURST"])
    batches.configure(app.config["RECIPIENT_BATCH_INTERVAL"])


def _message_queue_channel(app: Flask) -> None:
    """Fill in ``SOCKETIO_CHANNEL`` with one named after this deployment's database.

    With a queue, the deployment's identity is read now (``DEPLOYMENT_ID``):
    every process that publishes, ``flask notify`` included, must agree on it.
    """
    if not app.config["SOCKETIO_MESSAGE_QUEUE"]:
        return
    from services.node.deployment import channel_for, deployment_id

    try:
        with app.app_context():
            app.config["DEPLOYMENT_ID"] = deployment_id()
    except Exception as exc:
        raise RuntimeError(f"cannot tell which deployment this is from its database, "
                           f"which names the message-queue channel: {exc}") from exc
    app.config["SOCKETIO_CHANNEL"] = (app.config["SOCKETIO_CHANNEL"]
                                      or channel_for(app.config["DEPLOYMENT_ID"]))


def _register_blueprints(app: Flask) -> None:
    from blueprints.analytics import analytics_bp
    from blueprints.auth import auth_bp
    from blueprints.cli import cli_bp, notify_cli_bp
    from blueprints.common import ID_CONVERTERS
    from blueprints.errors import register_error_handlers
    from blueprints.headers import register_security_headers
    from blueprints.health import health_bp
    from blueprints.inbound import inbound_bp
    from blueprints.messages import messages_bp
    from blueprints.notifications import notifications_bp
    from blueprints.openapi import openapi_bp
    from blueprints.pages import pages_bp
    from blueprints.quotas import quotas_bp
    from blueprints.socket_api import socket_api_bp
    from blueprints.suppressions import suppressions_bp
    from blueprints.webhooks import webhooks_bp

    app.url_map.converters.update(ID_CONVERTERS)
    for blueprint in (auth_bp, socket_api_bp, notifications_bp, messages_bp, webhooks_bp,
                      analytics_bp, pages_bp, health_bp, openapi_bp, cli_bp,
                      notify_cli_bp, quotas_bp, inbound_bp, suppressions_bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    register_security_headers(app)


def _configure_logging(app: Flask) -> None:
    from services.observability.log_context import configure

    configure(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])


def raise_file_limit() -> int:
    """Every socket is a file descriptor: lift the soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def serve(app: Flask) -> None:
    """Run the gevent WebSocket server as one node of the hub, until SIGINT or SIGTERM.

    Both signals stop it the same way (no new sockets, the open ones closed,
    the node's rows deleted), whatever the output is and whatever the parent
    left them set to: a pipeline started in the background by a script
    (``make run | tee log &``) inherits SIGINT ignored, and Ctrl-C then left
    the server running after ``make`` and ``tee`` had gone.
    """
    import signal

    import gevent
    import gevent.socket
    from gevent.pywsgi import WSGIServer

    from services.node.runtime import NodeRuntime, default_node_id
    from services.transport.handler import make_handler_class

    host, port = app.config["HOST"], app.config["PORT"]
    raise_file_limit()
    node = NodeRuntime(app, app.config.get("NODE_ID") or default_node_id(port))
    node.start()
    log_settings(app)
    handler = make_handler_class(app.config["MAX_MESSAGE_SIZE"],
                                 header_timeout=app.config["HTTP_HEADER_TIMEOUT"])
    listener = gevent.socket.socket(gevent.socket.AF_INET, gevent.socket.SOCK_STREAM)
    listener.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit TCP_NODELAY: without it, a response written in two
    # parts waits for the client's delayed ACK (40 ms per keep-alive request).
    listener.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
    listener.bind((host, port))
    listener.listen(1024)
    server = WSGIServer(listener, app, handler_class=handler, log=None)
    # Either signal stops accepting and ends serve_forever; the node then leaves (node.stop).
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(stop_signal, server.close)
    print(f"Hub serving on http://{host}:{port} (node {node.node_id})", flush=True)
    try:
        server.serve_forever()
    finally:
        node.stop()


if __name__ == "__main__":
    serve(create_app())
