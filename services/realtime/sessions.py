"""A socket's life: authenticate on connect, renew, expire, revoke, and leave no trace.

A socket's identity is checked again whenever its account changes, on every
node: it is dropped when the account is gone, disabled or has ended its
sessions, and its rooms follow the role it holds now.

The connect path fails closed: any error while authenticating refuses the
connection, and nothing is registered until authentication has succeeded.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from flask import current_app

from schemas.common import isoformat
from services import auth
from services.auth import Identity
from services.errors import AuthRefused, Forbidden, Unauthenticated
from services.observability import metrics
from services.observability.log_context import about_connection
from services.realtime import emitter, rooms
from services.realtime.connections import LiveConnection, connection_cap, registry
from services.realtime.rooms import MessageOwner
from services.transport.engine_sessions import client_address

log = logging.getLogger(__name__)


def token_from_handshake(environ: dict[str, Any], auth_data: Any) -> Any:
    """The token from ``auth.token``, else an ``Authorization: Bearer`` header, else ``?token=``."""
    if isinstance(auth_data, dict) and "token" in auth_data:
        return auth_data["token"]
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip()
    values = parse_qs(environ.get("QUERY_STRING", "")).get("token")
    return values[0] if values else None


def authenticate_connect(sid: str, environ: dict[str, Any], auth_data: Any) -> Identity:
    """The identity for a new socket, or ``AuthRefused`` with the reason the client sees.

    Besides the token, the cap on connections per user, across the cluster,
    is enforced here (the place taken is given back by ``close_session``);
    the cap per address counts Engine.IO sessions from their first request
    (``services.transport.engine_sessions``), so it was checked before this.
    The answer waits until the socket's rooms reach this process, so that
    nothing sent to the user after the client is connected is missed.
    """
    if not registry.accepting:
        raise AuthRefused("This node is stopping: connect again", "unavailable")
    identity = auth.authenticate_token(token_from_handshake(environ, auth_data))
    if not connection_cap.reserve(sid, identity.user_id,
                                  current_app.config["MAX_CONNECTIONS_PER_USER"]):
        raise AuthRefused("Too many connections for this user", "too_many_connections")
    try:
        emitter.prepare_rooms(rooms.rooms_on_connect(identity))
    except BaseException:
        connection_cap.release(sid)
        raise
    return identity


def remote_address(environ: dict[str, Any]) -> str | None:
    """The client's address, as its Engine.IO session is bound to it; None when unknown."""
    return client_address(environ) or None


def open_session(sid: str, *, identity: Identity, environ: dict[str, Any]) -> None:
    """Register an authenticated socket, put it in its rooms and tell it who it is.

    Called once the CONNECT reply has gone out, so the ``session`` event and
    anything sent to its rooms arrive after the client is connected.
    """
    registry.add(
        LiveConnection(
            sid=sid,
            identity=identity,
            connected_at=datetime.now(UTC),
            remote_addr=remote_address(environ),
            user_agent=(environ.get("HTTP_USER_AGENT") or "")[:256] or None,
        )
    )
    metrics.connects.inc()
    metrics.live_connections.set(len(registry.by_sid))
    with about_connection(sid, identity.user_id):
        log.info("socket connected from %s (origin %s)", remote_address(environ),
                 environ.get("HTTP_ORIGIN", "-"))
    for room in rooms.rooms_on_connect(identity):
        emitter.enter_room(sid, room)
    emitter.emit_to_sid(sid, event="session", payload=session_payload(identity))


def session_payload(identity: Identity) -> dict[str, Any]:
    return {
        "userId": str(identity.user_id),
        "role": identity.role,
        "expiresAt": isoformat(identity.expires_at),
    }


def close_session(sid: str) -> LiveConnection | None:
    """Forget a socket; a sid that never finished connecting is simply not there."""
    connection_cap.release(sid)
    conn = registry.remove(sid)
    if conn is not None:
        with about_connection(sid, conn.identity.user_id):
            log.info("socket disconnected")
        metrics.disconnects.inc()
        metrics.live_connections.set(len(registry.by_sid))
    return conn


def renew(conn: LiveConnection, *, token: Any, message_owner: MessageOwner) -> dict[str, Any]:
    """Swap the socket's token for a new one of the same user, without reconnecting.

    A token with another role than the old one re-checks every room of the
    socket against the room policy (``message_owner`` as for ``join_room``).
    """
    try:
        identity = auth.authenticate_token(token)
    except AuthRefused as refused:
        raise Unauthenticated(refused.message) from None
    if identity.user_id != conn.identity.user_id:
        raise Forbidden("The new token belongs to another user")
    _take_identity(conn, identity, message_owner)
    conn.expiry_warned = False
    conn.expired_notice_at = None
    return {"expiresAt": isoformat(identity.expires_at)}


def _take_identity(conn: LiveConnection, identity: Identity, message_owner: MessageOwner) -> None:
    """Give the socket ``identity``; when the role changes, its rooms follow the policy.

    The policy depends only on the user and the role (who owns a message never
    changes), so with both unchanged every room the socket is in stays allowed.
    """
    role_changed = identity.role != conn.identity.role
    conn.identity = identity
    if not role_changed:
        return
    enter, leave = rooms.reauthorize(identity, current=conn.rooms, message_owner=message_owner)
    for room in leave:
        emitter.leave_room(conn.sid, room)
    for room in enter:
        emitter.enter_room(conn.sid, room)


def sweep_expiring_sessions(now: datetime | None = None) -> None:
    """Warn sockets whose token is about to expire; tell and then drop expired ones."""
    now = now or datetime.now(UTC)
    config = current_app.config
    warn_before = timedelta(seconds=config["AUTH_EXPIRY_WARNING_SECONDS"])
    grace = config["AUTH_EXPIRED_GRACE_SECONDS"]
    monotonic = time.monotonic()
    for conn in list(registry.by_sid.values()):
        expires_at = conn.identity.expires_at
        if expires_at is None:
            continue
        if expires_at <= now:
            if conn.expired_notice_at is None:
                conn.expired_notice_at = monotonic
                emitter.emit_to_sid(conn.sid, event="auth_expired", payload={
                    "message": "Token expired: send a new token with 'authenticate'"
                })
            elif monotonic - conn.expired_notice_at >= grace:
                log.info("disconnecting %s: token expired", conn.sid)
                emitter.disconnect_sid(conn.sid)
        elif not conn.expiry_warned and expires_at - now <= warn_before:
            conn.expiry_warned = True
            emitter.emit_to_sid(conn.sid, event="auth_expiring",
                                payload={"expiresAt": isoformat(expires_at)})


def close_all_sessions() -> int:
    """This node is stopping: refuse new sockets and close the open ones, so that their
    clients reconnect to another node."""
    registry.accepting = False
    return emitter.close_transports()


def apply_revocations(revoked: dict[str, int | None], message_owner: MessageOwner) -> None:
    """Act on revocations new to this process: drop the sockets of revoked sessions, and
    check again the sockets of accounts that changed (see ``auth.announce_account_change``)."""
    auth.forget_verified_tokens()
    changed = auth.changed_accounts(revoked)
    for user_id in changed:
        auth.forget_cached_user(user_id)
    for conn in list(registry.by_sid.values()):
        if conn.identity.session_key in revoked:
            log.info("disconnecting %s: session revoked", conn.sid)
            emitter.disconnect_sid(conn.sid)
    for user_id in changed:
        recheck_user_sessions(user_id, message_owner)


def recheck_user_sessions(user_id: int, message_owner: MessageOwner) -> None:
    """Check this process's sockets of one user against the account as it is now.

    A socket whose account is gone, disabled or has ended its sessions is
    disconnected; one whose role changed keeps only the rooms the new role
    allows.
    """
    for sid in list(registry.sids_of_user(user_id)):
        conn = registry.get(sid)
        if conn is None:
            continue
        try:
            identity = auth.identity_from_claims(conn.identity.claims)
        except AuthRefused as refused:
            log.info("disconnecting %s: %s", sid, refused.message)
            emitter.disconnect_sid(sid)
            continue
        _take_identity(conn, identity, message_owner)


def join_room(conn: LiveConnection, *, room: str, message_owner: MessageOwner) -> str:
    """Join a room the policy allows, within the per-socket room cap."""
    room = rooms.validate_room_name(room)
    rooms.authorize_join(conn.identity, room=room, message_owner=message_owner)
    limit = current_app.config["MAX_ROOMS_PER_CONNECTION"]
    if room not in conn.rooms and rooms.client_room_count(conn.rooms) >= limit:
        raise Forbidden("Room limit reached for this connection")
    emitter.enter_room(conn.sid, room)
    return room


def leave_room(conn: LiveConnection, room: str) -> str:
    room = rooms.validate_room_name(room)
    rooms.authorize_leave(conn.identity, room)
    emitter.leave_room(conn.sid, room)
    return room


def record_pong(conn: LiveConnection, timestamp: Any) -> float | None:
    """Note that the socket is alive, and the round trip when it echoes our ping's timestamp."""
    rtt_ms = None
    sent_at = _parse_timestamp(timestamp)
    if sent_at is not None:
        elapsed = (datetime.now(UTC) - sent_at).total_seconds() * 1000
        if 0 <= elapsed < 60_000:
            rtt_ms = round(elapsed, 3)
    registry.record_seen(conn.sid, rtt_ms)
    return rtt_ms


def _parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 string or epoch milliseconds, as ping sends and clients echo."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value / 1000, UTC)
        if isinstance(value, str) and len(value) <= 64:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def ping_all() -> dict[str, Any]:
    """Emit ``ping`` to every authenticated socket on every node."""
    timestamp = isoformat(datetime.now(UTC))
    emitter.emit_to_authenticated("ping", {"timestamp": timestamp})
    return {"timestamp": timestamp}
