"""Cron expressions: the times they give, in timezones and across daylight saving."""

from __future__ import annotations

import datetime

import pytest

from prana._cron import CronError, parse_cron

UTC = datetime.UTC


def after(expression: str, moment: datetime.datetime, timezone: str = "UTC") -> str:
    cron = parse_cron(expression, timezone)
    found = cron.next_after(moment.timestamp())
    return datetime.datetime.fromtimestamp(found, cron.zone).isoformat()


START = datetime.datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/15 * * * *", "2026-03-28T12:15:00+00:00"),  # strictly after
        ("0 9 * * mon-fri", "2026-03-30T09:00:00+00:00"),
        ("0 0 29 feb *", "2028-02-29T00:00:00+00:00"),
        ("@weekly", "2026-03-29T00:00:00+00:00"),
        ("0 0 * * 7", "2026-03-29T00:00:00+00:00"),  # 7 is Sunday too
        ("0 0 13 * fri", "2026-04-03T00:00:00+00:00"),  # either day field matches
        ("5,35 1-3/2 * * *", "2026-03-29T01:05:00+00:00"),
    ],
)
def test_next_times(expression: str, expected: str) -> None:
    assert after(expression, START) == expected


def test_daylight_saving_skips_a_missing_time_and_fires_a_repeated_one_once() -> None:
    # 2026-03-29: Berlin has no 02:30; 2026-10-25: it has two.
    assert after("30 2 * * *", START, "Europe/Berlin") == "2026-03-30T02:30:00+02:00"
    cron = parse_cron("30 2 * * *", "Europe/Berlin")
    first = cron.next_after(datetime.datetime(2026, 10, 24, 12, tzinfo=UTC).timestamp())
    second = cron.next_after(first)
    assert second - first == 25 * 3600  # the next day, not an hour later


def test_latest_due_is_the_last_time_up_to_now() -> None:
    cron = parse_cron("*/15 * * * *")
    begin = START.timestamp()
    assert cron.latest_due(begin, begin + 3600 + 60) == begin + 3600
    assert cron.latest_due(begin, begin + 60) is None
    yearly = parse_cron("@yearly")  # far apart: found beyond the two-day window
    assert (
        yearly.latest_due(begin, begin + 2 * 365 * 86400)
        == datetime.datetime(2028, 1, 1, tzinfo=UTC).timestamp()
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * *", "has 3 fields; it needs 5"),
        ("*/0 * * * *", "the step after '/' must be a whole number above 0"),
        ("5-1 * * * *", "runs backwards"),
        ("0 0 31 2 *", "names a day that its months never have"),
        ("0 0 * * funday", "'funday' is not valid in the day of week field"),
        ("@often", "unknown cron macro '@often'"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_cron(expression)
