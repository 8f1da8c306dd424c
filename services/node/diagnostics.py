"""What this process holds per connection, to prove that departed sockets leave nothing.

Read by the churn soak and its test through an admin-only route that exists
only when ``HUB_DEBUG_INTERNALS`` is on (testing), never in production.
"""

from __future__ import annotations

import io
from types import TracebackType
from typing import Any

import greenlet
from gevent import pywsgi

from extensions import socketio
from services.analytics.publisher import publisher
from services.node.runtime import collector
from services.realtime.connections import registry
from services.transport import rate_limits

# The counters of ``internals()`` that grow with each live connection (or one being
# opened or closed): its sid room and the rooms it joined, its entries in Socket.IO's
# and Engine.IO's tables, and in this hub's registry, engine-session, handshake and
# rate-limit maps.
# After churn and a settle each is back where it was before, or something kept a
# departed socket. The churn test and the soak both check this one list.
PER_CONNECTION = ("engineioSockets", "socketioRooms", "socketioSids", "socketioRoomIndex",
                  "socketioMemberships", "pendingConnect", "pendingDisconnect", "callbacks",
                  "binaryPackets", "environ", "protocolErrors", "registryConnections",
                  "registryUsers", "engineClients", "engineAddresses", "awaitingConnect",
                  "authenticating", "rateLimitBuckets")


_HEADERS_CLASS = type(pywsgi.WSGIHandler.headers)


def _rss_kb() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def internals() -> dict[str, Any]:
    server = socketio.server
    manager = server.manager
    namespace_rooms = manager.rooms.get("/", {})
    sids = set()
    memberships = 0
    for members in namespace_rooms.values():
        memberships += len(members)
        sids.update(members.keys())
    namespace = server.namespace_handlers.get("/")
    objects = collector.all_objects()
    return {
        "engineioSockets": len(server.eio.sockets),
        "socketioRooms": len(namespace_rooms),
        "socketioMemberships": memberships,
        "socketioSids": len(sids),
        "socketioRoomIndex": len(manager.sid_rooms),
        "pendingConnect": sum(len(v) for v in manager.pending_connect.values()),
        "pendingDisconnect": sum(len(v) for v in manager.pending_disconnect.values()),
        "callbacks": sum(len(v) for v in manager.callbacks.values()),
        "binaryPackets": len(server._binary_packet),
        "environ": len(server.environ),
        "protocolErrors": len(server.protocol_errors),
        "registryConnections": len(registry.by_sid),
        "registryUsers": len(registry.sids_by_user),
        "engineClients": len(server.engine_sessions.clients),
        "engineAddresses": len(server.engine_sessions.per_address),
        "awaitingConnect": len(server.engine_sessions.deadlines),
        "authenticating": len(getattr(namespace, "_authenticated", {})),
        "rateLimitBuckets": len(rate_limits.limiter.budgets),
        "analyticsSubscribers": len(publisher.sent_versions),
        "greenlets": sum(1 for obj in objects if isinstance(obj, greenlet.greenlet)),
        # Each entry of a traceback kept alive keeps a frame and its locals.
        "tracebacks": sum(1 for obj in objects if isinstance(obj, TracebackType)),
        # An HTTP request's buffered reader holds 8 KB; an open WebSocket keeps none.
        "requestReaders": sum(1 for obj in objects
                              if isinstance(obj, io.BufferedReader) and not obj.closed),
        # A request's parsed head and its WSGI environ: an open WebSocket keeps neither,
        # only the few environ keys its session reads later.
        "requestHeads": sum(1 for obj in objects
                            if isinstance(obj, _HEADERS_CLASS) and len(obj)),
        "requestEnvirons": sum(1 for obj in objects
                               if isinstance(obj, dict) and "wsgi.version" in obj),
        "rssKb": _rss_kb(),
    }
