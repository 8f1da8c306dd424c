"""Extension singletons, created here and bound to the app in ``create_app``."""

from services.deferred_imports import defer_import

defer_import("aiohttp")  # python-engineio imports it for a client the hub never runs

from flask_jwt_extended import JWTManager  # noqa: E402
from flask_limiter import Limiter  # noqa: E402
from flask_limiter.util import get_remote_address  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402
from flask_sqlalchemy import SQLAlchemy  # noqa: E402
from sqlalchemy import MetaData  # noqa: E402

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Objects keep their values after commit: services emit what they just stored, and
# re-reading every row after each commit would double the queries on hot paths.
db = SQLAlchemy(metadata=metadata, session_options={"expire_on_commit": False})
jwt = JWTManager()
socketio = SocketIO()


class RouteLimiter(Limiter):
    """Flask-Limiter for limits declared on routes, which are the only kind the hub has.

    Flask-Limiter looks at every request twice: in a ``before_request`` hook,
    for the limits that apply across routes (application, default, blueprint
    and meta limits), and in the decorator of a route that declares its own.
    The hub declares limits on routes only (logins, registration, sending), so
    the hook found none, on every request, for over a quarter of the
    instructions of a bare ``GET /healthz`` (``make bench-requests``). It is
    skipped; the routes' decorators check as before.
    ``tests/test_login_limits.py`` fails if a limit of another kind is ever
    configured, which this class would not check.
    """

    def _check_request_limit(self, callable_name: str | None = None,
                             in_middleware: bool = True) -> None:
        if not in_middleware:
            super()._check_request_limit(callable_name=callable_name, in_middleware=False)


limiter = RouteLimiter(key_func=get_remote_address)
