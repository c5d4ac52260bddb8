"""Durations (``90s``, ``2h``, ``1h30m``) and datetimes in workflow parameters."""

from __future__ import annotations

import datetime
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> float:
    """Seconds in a duration: a number of seconds, or text like ``90s``, ``2h``,
    ``3d``, ``1h30m``, ``250ms`` (units ms, s, m, h, d, w).

    Raises ``ValueError`` with a message that shows the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '90s' or '2h', got {value!r}")
    text = value.strip().lower().replace(" ", "")
    if not text or _PART.sub("", text):
        raise ValueError(f"{value!r} is not a duration; write it like 90s, 15m, 2h, 3d or 1h30m")
    return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))


def parse_datetime(value: object) -> float:
    """Seconds since the epoch of an ISO 8601 datetime that states its timezone
    (``2030-01-02T09:00:00+01:00`` or ``...Z``).

    Raises ``ValueError`` for anything else: a datetime without a timezone would mean
    different moments on different machines.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 datetime, got {value!r}")
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO 8601 datetime like 2030-01-02T09:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no timezone; add one, such as Z or +01:00")
    return moment.timestamp()


def iso_time(moment: float) -> str:
    """``moment`` (seconds since the epoch) as an ISO 8601 UTC datetime."""
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat()
