"""Serve the hub as ``python app.py`` does, with one part swapped for the alternative measured.

``bench/variants.py`` starts this in place of ``app.py``. Each variant is
applied here, before the application is imported or served, so that the hub's
own code carries no switch that only a benchmark would use:

- ``hub``: as shipped (the hub's Engine.IO WebSocket socket, orjson packets);
- ``hub-json``: Socket.IO packets through python-engineio's JSON module (the
  standard library's, as python-socketio uses by default) instead of
  ``PacketJson``;
- ``engineio-socket``: direct WebSocket sessions served by python-engineio's
  own socket on gevent-websocket (the hub's size-limited frame reader kept),
  without ``serve_engine_request``;
- ``simple-websocket``: python-engineio's gevent driver on simple-websocket,
  as it runs when gevent-websocket is not installed, behind gevent's plain
  WSGI handler (as Flask-SocketIO's own ``run`` serves it then).

    python -m bench.hub_variant VARIANT
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402


def as_shipped() -> None:
    """The baseline: nothing to change."""


def stdlib_json() -> None:
    """python-socketio's default packet JSON, so only the JSON module differs."""
    from engineio import json as engineio_json

    from services.transport.packets import HubPacket

    HubPacket.json = engineio_json


def engineio_socket() -> None:
    """Direct WebSockets take python-engineio's path, as upgrades from polling do."""
    from geventwebsocket.handler import WebSocketHandler

    from services.transport import handler

    class EngineioSocketHandler(handler.LimitedWebSocketHandler):
        """The hub's handler, minus the hand-over to ``serve_engine_request``."""

        def run_application(self):
            return WebSocketHandler.run_application(self)

    def make_handler_class(max_message_size: int, **options: float) -> type:
        return type("EngineioSocketHandler", (EngineioSocketHandler,),
                    {"max_message_size": max_message_size, **options})

    handler.make_handler_class = make_handler_class


def simple_websocket() -> None:
    """python-engineio's gevent driver as it is when gevent-websocket is absent.

    The driver chooses once, when it is imported, by trying to import
    ``geventwebsocket``; it is hidden for that one import, so the driver's
    own simple-websocket branch is what runs. gevent-websocket's handler
    would take the upgrade itself, so requests get gevent's plain handler.
    """
    from gevent.pywsgi import WSGIHandler

    hidden = sys.modules.pop("geventwebsocket", None)
    sys.modules["geventwebsocket"] = None  # type: ignore[assignment]
    try:
        from engineio.async_drivers import gevent as driver
    finally:
        del sys.modules["geventwebsocket"]
        if hidden is not None:
            sys.modules["geventwebsocket"] = hidden
    if driver.SimpleWebSocketWSGI is None:
        raise RuntimeError("python-engineio's gevent driver was imported before the variant")

    from services.transport import handler

    handler.make_handler_class = lambda _max_message_size, **_options: WSGIHandler


VARIANTS: dict[str, Callable[[], None]] = {
    "hub": as_shipped,
    "hub-json": stdlib_json,
    "engineio-socket": engineio_socket,
    "simple-websocket": simple_websocket,
}


def main() -> None:
    """Apply the variant named on the command line, then serve the hub with it."""
    if len(sys.argv) != 2 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(VARIANTS)}}}")
    VARIANTS[sys.argv[1]]()
    from app import create_app, serve

    serve(create_app())


if __name__ == "__main__":
    main()
