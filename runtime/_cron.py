"""Cron expressions: five fields (minute, hour, day of month, month, day of week).

Each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a
comma list of these; months and weekdays also take names (``jan``, ``mon``); day of
week 0 and 7 are both Sunday. ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``,
``@monthly`` and ``@yearly`` (``@annually``) stand for the usual expressions. As in
classic cron, when both day fields are restricted a day matches if either does.

Times are matched in a timezone (an IANA name, default UTC). A local time that a
daylight-saving change skips does not occur that day; a local time that occurs
twice fires once, at its first occurrence.
"""

from __future__ import annotations

import datetime
import zoneinfo

import attrs

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, lowest, highest, names (numbered from lowest)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# Leap days recur within 8 years (1900 and 2100 are not leap years).
_SEARCH_DAYS = 366 * 8 + 2


class CronError(ValueError):
    """A cron expression or timezone that cannot be used."""


@attrs.frozen
class Cron:
    """A parsed cron expression in a timezone; :meth:`next_after` gives its times."""

    expression: str
    timezone: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday, as datetime.weekday()
    any_day: bool  # day of month is '*'
    any_weekday: bool  # day of week is '*'
    zone: datetime.tzinfo = attrs.field(eq=False, repr=False)

    def _day_matches(self, day: datetime.date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = day.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday
        return by_date or by_weekday

    def next_after(self, moment: float) -> float:
        """The first time strictly after ``moment`` (seconds since the epoch) that
        the expression matches, in seconds since the epoch."""
        start = datetime.datetime.fromtimestamp(moment, self.zone)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        local = datetime.datetime(
                            day.year, day.month, day.day, hour, minute, tzinfo=self.zone
                        )
                        when = local.timestamp()
                        if when <= moment or not _exists(local):
                            continue
                        return when
            day += datetime.timedelta(days=1)
        raise CronError(f"cron expression {self.expression!r} never matches a date")

    def latest_due(self, after: float, now: float) -> float | None:
        """The last time in (``after``, ``now``], or ``None`` if there is none."""
        # Look in the last two days first: a frequent schedule left for months has
        # too many times to walk through one by one.
        for start in (max(after, now - 2 * 86400), after):
            latest = None
            when = self.next_after(start)
            while when <= now:
                latest = when
                when = self.next_after(when)
            if latest is not None or start == after:
                return latest
        return None


def _exists(local: datetime.datetime) -> bool:
    """Whether a local wall time occurs (a daylight-saving gap skips some)."""
    back = datetime.datetime.fromtimestamp(local.timestamp(), local.tzinfo)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def parse_cron(expression: object, timezone: object = "UTC") -> Cron:
    """Parse ``expression`` in ``timezone``. Raises :class:`CronError` saying which
    field is wrong and what it accepts."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError(
            f"a cron expression is text like '*/15 * * * *' or '@daily', not {expression!r}"
        )
    zone = _zone(timezone)
    text = _MACROS.get(expression.strip().lower(), expression.strip())
    if text.startswith("@"):
        raise CronError(
            f"unknown cron macro {text!r}; use one of {', '.join(sorted(set(_MACROS)))}"
        )
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"cron expression {expression!r} has {len(parts)} fields; it needs 5: "
            "minute hour day-of-month month day-of-week, as in '30 9 * * mon-fri'"
        )
    values = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    minutes, hours, days, months, cron_days = values
    weekdays = frozenset((day - 1) % 7 for day in cron_days)  # cron 0/7 = Sunday
    if not _possible(days, months):
        raise CronError(f"cron expression {expression!r} names a day that its months never have")
    return Cron(
        expression=expression.strip(),
        timezone=str(timezone),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        any_day=parts[2] in ("*", "?"),
        any_weekday=parts[4] in ("*", "?"),
        zone=zone,
    )


def _zone(timezone: object) -> datetime.tzinfo:
    if not isinstance(timezone, str) or not timezone:
        raise CronError(
            f"a timezone is an IANA name like 'Europe/Berlin' or 'UTC', not {timezone!r}"
        )
    if timezone.upper() == "UTC":
        return datetime.UTC
    try:
        return zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"unknown timezone {timezone!r}; use an IANA name like 'Europe/Berlin' or 'UTC'"
        ) from None


def _possible(days: frozenset[int], months: frozenset[int]) -> bool:
    longest = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}
    return any(day <= longest.get(month, 31) for day in days for month in months)


def _field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    if text == "?" and name.startswith("day"):
        text = "*"
    chosen: set[int] = set()
    for item in text.split(","):
        chosen |= _item(item, name, low, high, names)
    return frozenset(chosen)


def _item(item: str, name: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    hint = f"the {name} field takes {low}-{high}"
    if names:
        hint += f" or names ({names[0]}-{names[-1]})"
    hint += ", '*', ranges a-b, steps */n and lists a,b"
    range_text, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronError(f"{item!r}: the step after '/' must be a whole number above 0; {hint}")
        step = int(step_text)
    if range_text == "*":
        first, last = low, high
    elif "-" in range_text:
        start, _, end = range_text.partition("-")
        first, last = (
            _number(start, name, low, high, names, hint),
            _number(end, name, low, high, names, hint),
        )
        if first > last:
            raise CronError(f"{item!r}: the range in the {name} field runs backwards")
    else:
        first = _number(range_text, name, low, high, names, hint)
        last = high if step_text else first
    if name == "day of week" and range_text == "*":
        last = 6  # 7 is Sunday again
    return set(range(first, last + 1, step))


def _number(text: str, name: str, low: int, high: int, names: tuple[str, ...], hint: str) -> int:
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + low
    if not text.isdigit():
        raise CronError(f"{text!r} is not valid in the {name} field; {hint}")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{value} is out of range in the {name} field; {hint}")
    return value
