"""Every extension of the Socket.IO libraries, in one place: ``install_transport``.

Written against python-socketio 5.18.1, python-engineio 4.15.1,
Flask-SocketIO 5.7.0, gevent 26.9.0 and gevent-websocket 0.10.1 (the
versions ``requirements.txt`` pins). The seams, in the order a request
meets them:

Through constructors, which the libraries offer for it:

- gevent's ``WSGIServer(handler_class=...)`` and gunicorn's ``worker_class``:
  ``services.transport.handler`` (request heads on a deadline, direct
  Engine.IO WebSockets served by ``engine_socket``, size-limited frames).
- python-socketio's ``client_manager=``, through Flask-SocketIO's
  ``init_app``: ``services.transport.client_manager`` (rooms indexed per sid;
  with a message queue, local emits kept off it and the queue observed; with
  Redis, room emits on per-room channels, ``room_channels``).
- ``serializer=HubPacket`` and ``json=PacketJson``, the same way:
  ``services.transport.packets`` (orjson; deep nesting a ``ValueError``).

Applied here, after Flask-SocketIO has built the server, because no
constructor takes them:

- the ``socketio.Server`` becomes a ``HubServer``
  (``services.transport.socket_server``), its ``engineio.Server`` a
  ``HubEngineServer`` (``services.transport.engine_http``), by setting their
  ``__class__``; Engine.IO's handlers, bound when the server was built, are
  bound again.

Applied per connection by the handler, because gevent-websocket builds its
socket from a module global: a session upgraded from long-polling gets a
``LimitedWebSocket`` (``services.transport.handler``).

One more library's class is extended outside the transport: Flask-Limiter's
``Limiter``, by ``extensions.RouteLimiter`` (route limits only).

``EXTENSIONS`` lists every class of the hub that extends a library's, and
``PRIVATE_NAMES`` every private name of the libraries the hub overrides,
calls or reads; ``tests/test_library_seams.py`` checks each against the
installed libraries (it exists, and an override takes the parameters the
library passes), so an upgrade that renames one fails one named test
instead of silently bypassing the hub's code.
"""

from __future__ import annotations

import engineio
import socketio
from engineio.socket import Socket as EngineSocket
from flask import Flask
from flask_limiter import Limiter
from flask_socketio import SocketIO
from gevent.pywsgi import WSGIHandler
from gevent.socket import socket as GeventSocket
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import WebSocket
from socketio.packet import Packet
from werkzeug.local import LocalProxy

from extensions import RouteLimiter
from services.transport import rate_limits
from services.transport.client_manager import QueueObserver, RoomIndex, build_client_manager
from services.transport.engine_http import HubEngineServer
from services.transport.engine_sessions import EngineSessions
from services.transport.engine_socket import EngineWebSocket
from services.transport.handler import (
    HubWebSocketWorker,
    LimitedWebSocket,
    LimitedWebSocketHandler,
)
from services.transport.http_connections import RequestHeadDeadline
from services.transport.local_emits import LocalSidEmits
from services.transport.origins import origin_policy
from services.transport.packets import HubPacket
from services.transport.room_channels import RoomChannels
from services.transport.socket_server import HubServer

# Every class of the hub that extends a library's: (the library's class, the hub's class
# or the mixin put ahead of it).
EXTENSIONS: tuple[tuple[type, type], ...] = (
    (socketio.Server, HubServer),
    (engineio.Server, HubEngineServer),
    (EngineSocket, EngineWebSocket),
    (Packet, HubPacket),
    (socketio.Manager, RoomIndex),
    (socketio.PubSubManager, LocalSidEmits),
    (socketio.PubSubManager, QueueObserver),
    (socketio.RedisManager, RoomChannels),
    (WSGIHandler, RequestHeadDeadline),
    (WebSocketHandler, LimitedWebSocketHandler),
    (WebSocket, LimitedWebSocket),
    (GeventWebSocketWorker, HubWebSocketWorker),
    (Limiter, RouteLimiter),
)
# Every private name of the libraries that the hub overrides (in the classes above),
# calls or reads.
PRIVATE_NAMES: tuple[tuple[type, str], ...] = (
    (socketio.Server, "_send_packet"),
    (socketio.Server, "_send_eio_packet"),
    (socketio.Server, "_handle_connect"),
    (socketio.Server, "_handle_disconnect"),
    (socketio.Server, "_handle_event"),
    (socketio.Server, "_handle_eio_connect"),
    (socketio.Server, "_handle_eio_message"),
    (socketio.Server, "_handle_eio_disconnect"),
    (socketio.Server, "_binary_packet"),
    (engineio.Server, "_bad_request"),
    (engineio.Server, "_method_not_found"),
    (engineio.Server, "_trigger_event"),
    (engineio.Server, "_cors_headers"),
    (engineio.Server, "_cors_allowed_origins"),
    (EngineSocket, "_send_ping"),
    (socketio.PubSubManager, "_listen"),
    (socketio.PubSubManager, "_publish"),
    (socketio.PubSubManager, "_handle_emit"),
    (socketio.RedisManager, "_redis_connect"),
    (WSGIHandler, "_handle_client_error"),
    (Limiter, "_check_request_limit"),
    # The socket's read watcher, which a WebSocket's reader waits on after a short read.
    (GeventSocket, "_read_event"),
    # Flask's documented way to hand the application to a greenlet that outlives the request.
    (LocalProxy, "_get_current_object"),
)


def install_transport(app: Flask, socketio_extension: SocketIO) -> HubServer:
    """Bind Flask-SocketIO to ``app`` with the hub's transport; returns the server.

    Reads the settings (``SOCKETIO_*``, ``MAX_*``, ``EVENT_*``,
    ``CORS_ALLOWED_ORIGINS``, ``CONNECT_TIMEOUT``); ``SOCKETIO_CHANNEL`` must
    already name the queue's channel when there is a queue.
    """
    config = app.config
    socketio_extension.init_app(
        app,
        async_mode="gevent",
        client_manager=build_client_manager(config["SOCKETIO_MESSAGE_QUEUE"],
                                            config["SOCKETIO_CHANNEL"], config["NODE_ID"]),
        serializer=HubPacket,
        # python-socketio gives ``json`` to its packet class and to python-engineio's:
        # the packet class's own, so that both decode alike.
        json=HubPacket.json,
        cors_allowed_origins=origin_policy(config["CORS_ALLOWED_ORIGINS"]),
        async_handlers=False,
        manage_session=False,
        ping_interval=config["SOCKETIO_PING_INTERVAL"],
        ping_timeout=config["SOCKETIO_PING_TIMEOUT"],
        max_http_buffer_size=config["MAX_MESSAGE_SIZE"],
        logger=False,
        engineio_logger=False,
    )
    server = socketio_extension.server
    server.__class__ = HubServer
    server.eio.__class__ = HubEngineServer
    hub: HubServer = server  # type: ignore[assignment]
    hub._hub_init(config["MAX_OUTBOUND_PACKETS"], EngineSessions(
        max_per_address=config["MAX_CONNECTIONS_PER_ADDRESS"],
        connect_timeout=config["CONNECT_TIMEOUT"]))
    # Engine.IO holds bound methods taken when the server was built: bind them again.
    hub.eio.on("connect", hub._handle_eio_connect)
    hub.eio.on("message", hub._handle_eio_message)
    hub.eio.on("disconnect", hub._handle_eio_disconnect)
    rate_limits.limiter.configure(
        event_rate=config["EVENT_RATE"], event_burst=config["EVENT_BURST"],
        byte_rate=config["EVENT_BYTES_PER_SECOND"], byte_burst=config["EVENT_BYTES_BURST"])
    return hub
