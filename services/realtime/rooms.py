"""Room names and the one policy that decides who may be in which room.

Every join and leave asks this module; nothing else builds a room name from a
string or decides access to one. A user can never enter a room that would let
them see another user's events, nor stay in one after losing the role that
let them in.
"""

from __future__ import annotations

from collections.abc import Callable

from services.auth import Identity
from services.errors import Forbidden, InvalidPayload

USER_PREFIX = "user:"
MESSAGE_PREFIX = "message:"
BATCH_SUFFIX = ":batch"
OPEN_PREFIX = "room:"
ANALYTICS_PREFIX = "analytics:"
ADMINS_ROOM = "admins"
# Joined only once authentication has succeeded: broadcasts and pings go here,
# never namespace-wide, so a socket still authenticating receives nothing.
AUTHENTICATED_ROOM = "authenticated"
ANALYTICS_GLOBAL_ROOM = "analytics:global"
MAX_ROOM_NAME_LENGTH = 128

# Rooms the server manages itself; clients never join or leave them by name.
_INTERNAL_ROOMS = frozenset({AUTHENTICATED_ROOM})
# Rooms only admins may be in; the server puts them there.
_ADMIN_ROOMS = frozenset({ADMINS_ROOM, ANALYTICS_GLOBAL_ROOM})

# The owner of a message id, or None when there is no such message.
MessageOwner = Callable[[int], int | None]


def user_room(user_id: int) -> str:
    return f"{USER_PREFIX}{user_id}"


def message_room(message_id: int) -> str:
    return f"{MESSAGE_PREFIX}{message_id}"


def recipient_batch_room(message_id: int) -> str:
    """Where a message's batched trackers are: ``recipient_updates``, never ``recipient_update``."""
    return f"{MESSAGE_PREFIX}{message_id}{BATCH_SUFFIX}"


def analytics_user_room(user_id: int) -> str:
    return f"{ANALYTICS_PREFIX}user:{user_id}"


def rooms_on_connect(identity: Identity) -> list[str]:
    """The rooms a socket enters as soon as it is authenticated."""
    rooms = [AUTHENTICATED_ROOM, user_room(identity.user_id)]
    if identity.is_admin:
        rooms.append(ADMINS_ROOM)
    return rooms


def validate_room_name(room: object) -> str:
    """A room name as given, if it is 1-128 printable characters without outer spaces."""
    if not isinstance(room, str):
        raise InvalidPayload("Room name must be a string")
    if not 1 <= len(room) <= MAX_ROOM_NAME_LENGTH:
        raise InvalidPayload(f"Room name must be 1-{MAX_ROOM_NAME_LENGTH} characters")
    if not room.isprintable() or room != room.strip():
        raise InvalidPayload("Room name must be printable characters without outer spaces")
    return room


def parse_id(text: str) -> int | None:
    """A canonical positive decimal id (``"12"``, not ``"012"`` or ``"+12"``), else None."""
    if text.isascii() and text.isdigit() and not text.startswith("0") and len(text) <= 18:
        return int(text)
    return None


def message_of_room(room: str) -> int | None:
    """The message a ``message_room`` or ``recipient_batch_room`` is for; None for others."""
    if not room.startswith(MESSAGE_PREFIX):
        return None
    return parse_id(room[len(MESSAGE_PREFIX):].removesuffix(BATCH_SUFFIX))


def user_of_room(room: str) -> int | None:
    """The user a ``user_room`` is for; None for other rooms."""
    return parse_id(room[len(USER_PREFIX):]) if room.startswith(USER_PREFIX) else None


def authorize_join(identity: Identity, *, room: str, message_owner: MessageOwner) -> None:
    """Raise ``Forbidden`` unless this identity may join ``room``.

    ``message_owner`` is passed in so this policy stays free of message queries.
    """
    if not _may_join(identity, room, message_owner):
        raise Forbidden("You may not join this room")


def _may_join(identity: Identity, room: str, message_owner: MessageOwner) -> bool:
    if room == user_room(identity.user_id):
        return True
    if room.startswith(OPEN_PREFIX) and len(room) > len(OPEN_PREFIX):
        return True
    if room.startswith(MESSAGE_PREFIX):
        message_id = message_of_room(room)
        if message_id is not None:
            owner = message_owner(message_id)
            return owner is not None and (identity.is_admin or owner == identity.user_id)
    return False


def reauthorize(identity: Identity, *, current: set[str],
                message_owner: MessageOwner) -> tuple[list[str], list[str]]:
    """The rooms to enter and to leave when the role behind a live socket changes.

    Every room the socket is in is judged again as if it were joined now, so a
    demoted admin leaves ``admins``, the global analytics and other users'
    ``message:`` rooms; a promoted one enters ``admins``, and the global
    analytics when subscribed to analytics.
    """
    leave = sorted(room for room in current
                   if not _may_stay(identity, room, message_owner))
    enter = [room for room in rooms_on_connect(identity) if room not in current]
    subscribed = analytics_user_room(identity.user_id) in current
    if identity.is_admin and subscribed and ANALYTICS_GLOBAL_ROOM not in current:
        enter.append(ANALYTICS_GLOBAL_ROOM)
    return enter, leave


def _may_stay(identity: Identity, room: str, message_owner: MessageOwner) -> bool:
    if room in _INTERNAL_ROOMS or room == analytics_user_room(identity.user_id):
        return True
    if room in _ADMIN_ROOMS:
        return identity.is_admin
    return _may_join(identity, room, message_owner)


def authorize_leave(identity: Identity, room: str) -> None:
    """The own user room and the server's internal rooms cannot be left."""
    if room == user_room(identity.user_id) or room in _INTERNAL_ROOMS:
        raise Forbidden("You may not leave this room")


def client_room_count(rooms: set[str]) -> int:
    """Rooms that count against the per-socket cap: all but the server's internal ones."""
    return len(rooms - _INTERNAL_ROOMS)


def visible_rooms(rooms: set[str]) -> list[str]:
    """What ``get_rooms`` shows: the socket's rooms without the server's internal ones."""
    return sorted(rooms - _INTERNAL_ROOMS)
