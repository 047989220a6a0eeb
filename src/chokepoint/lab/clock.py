"""The censor's clock in the lab: which offset from the wall clock makes a profile's local time read a given
hour. The daemon's clock is ``time.time() + offset`` (``censord --clock-offset``/``--fake-time``); a profile's
local time is that clock in its fixed ``timezone`` (``ProfileMeta.utc_offset_s``), which is what the engine's
``local_hour`` field reads (Myanmar's nightly shutdown, 01:00-09:00 local)."""

from __future__ import annotations

import datetime as dt
import re
import time

__all__ = ["parse_local_time", "local_now", "clock_offset_for"]

_LOCAL_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DAY = 24 * 3600


def parse_local_time(text: str) -> tuple[int, int]:
    """(hour, minute) of "HH:MM" (24-hour clock); ``ValueError`` for anything else."""
    match = _LOCAL_TIME.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a local time HH:MM (00:00-23:59), not {text!r}")
    return int(match.group(1)), int(match.group(2))


def local_now(utc_offset_s: int, now: float | None = None) -> dt.datetime:
    """The wall clock (``now``, default ``time.time()``) in a fixed UTC offset."""
    return dt.datetime.fromtimestamp(
        time.time() if now is None else now, dt.timezone(dt.timedelta(seconds=utc_offset_s))
    )


def clock_offset_for(utc_offset_s: int, local_time: str, now: float | None = None) -> float:
    """Seconds to add to the wall clock (``now``) so that the local clock at ``utc_offset_s`` reads
    ``local_time`` ("HH:MM", seconds 0): the nearest such instant, so the offset is within +-12 h."""
    now = time.time() if now is None else now
    hour, minute = parse_local_time(local_time)
    target = local_now(utc_offset_s, now).replace(hour=hour, minute=minute, second=0, microsecond=0)
    offset = target.timestamp() - now
    if offset > _DAY / 2:
        offset -= _DAY
    elif offset <= -_DAY / 2:
        offset += _DAY
    return offset
