"""Quiet hours: when a recipient of a ``quietHours`` message may be sent to, in its own time.

``QUIET_HOURS`` is a window of local time (``21:00-08:00``). A number's time
zones come from ``phonenumbers``; a number with several (a North American
number whose area code does not settle it) is released only at a moment that
is outside the window in every one of them, and a number with none known is
taken to be in UTC. The release is computed when the message is created and
stored as the recipient's ``not_before``, with its ``expires_at`` counted from
it, so the wait does not count against validity; the queue checks again when
it claims the recipient (``queue.claim_batch``), since a backlog can bring
its turn after the window has opened again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_time_zones

from services.errors import InvalidPayload

UNKNOWN_ZONE = "Etc/Unknown"
# A release is looked for over this many jumps (each past one zone's window) at most.
MAX_JUMPS = 64

Window = tuple[time, time]


@lru_cache(maxsize=4096)
def zones_of(phone: str) -> tuple[str, ...]:
    """The time zones of an E.164 number, as ``phonenumbers`` knows them; ``UTC`` if none."""
    zones = phone_time_zones.time_zones_for_number(phonenumbers.parse(phone))
    known = tuple(zone for zone in zones if zone != UNKNOWN_ZONE)
    return known or ("UTC",)


def _quiet_until(moment: datetime, zone: str, window: Window) -> datetime | None:
    """When the window ends in ``zone`` if ``moment`` is inside it there, else ``None``."""
    start, end = window
    local = moment.astimezone(ZoneInfo(zone))
    now = local.timetz().replace(tzinfo=None)
    inside = (start <= now < end) if start < end else (now >= start or now < end)
    if not inside:
        return None
    ends = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    # Across a daylight-saving change, the wall-clock end is normalised through UTC.
    return ends.astimezone(UTC)


def release_at(zones: Iterable[str], window: Window, earliest: datetime) -> datetime:
    """The first moment from ``earliest`` outside ``window`` in every one of ``zones``.

    Each zone still inside its window at a candidate stays inside until that
    window ends, so the next candidate is the latest of those ends: no moment
    in between can qualify. ``InvalidPayload`` when the zones' open hours never
    meet (their offsets are further apart than the open part of the day).
    """
    zones = tuple(zones)
    moment = earliest
    for _ in range(MAX_JUMPS):
        ends = [end for end in (_quiet_until(moment, zone, window) for zone in zones) if end]
        if not ends:
            return moment
        moment = max(ends)
    raise InvalidPayload("A number's time zones are never all outside QUIET_HOURS at once",
                         details={"timeZones": list(zones)})
