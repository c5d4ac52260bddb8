"""The engines on a store: one row per engine, its heartbeat, and the leader lease
(``Store.beat``), the same in SQLite and PostgreSQL.

Each engine writes its row at every heartbeat. An engine whose row has not been
written for ``stale_after`` seconds is gone: the others take its executions over (as
they do when its leases run out). One engine at a time leads: it holds
``leads_until`` and renews it at its beats; when it stops beating, the first engine
to beat after it ran out leads. The SQL stores run :func:`beat` in a transaction no
other beat runs beside (SQLite: its write lock; PostgreSQL: an advisory lock), so
that two engines never both take a free lead.
"""

from __future__ import annotations

from typing import Any

import attrs

# What the engines table adds to a store's schema (SQLite and PostgreSQL alike).
ENGINES_SCHEMA = """
    CREATE TABLE engines (
        owner TEXT PRIMARY KEY,
        started_at DOUBLE PRECISION NOT NULL,
        beat_at DOUBLE PRECISION NOT NULL,
        leads_until DOUBLE PRECISION
    );
    """
# A gone engine's row is forgotten this many times ``stale_after`` after its last beat.
FORGET_AFTER = 10


@attrs.frozen
class EngineBeat:
    """What an engine learns at its heartbeat (``Store.beat``): whether it leads, the
    engines alive (itself included) and those gone, by owner id."""

    leader: bool
    alive: tuple[str, ...]
    gone: tuple[str, ...]


def beat(db: Any, mark: str, owner: str, now: float, stale_after: float) -> EngineBeat:
    """:meth:`Store.beat` on a connection (``mark``: the driver's placeholder)."""
    db.execute(
        f"INSERT INTO engines (owner, started_at, beat_at) VALUES ({mark}, {mark}, {mark}) "
        "ON CONFLICT (owner) DO UPDATE SET beat_at = excluded.beat_at",
        (owner, now, now),
    )
    leads = db.execute(
        f"UPDATE engines SET leads_until = {mark} WHERE owner = {mark} AND NOT EXISTS "
        f"(SELECT 1 FROM engines WHERE owner <> {mark} AND leads_until > {mark})",
        (now + stale_after, owner, owner, now),
    ).rowcount
    rows = db.execute("SELECT owner, beat_at FROM engines ORDER BY owner").fetchall()
    db.execute(f"DELETE FROM engines WHERE beat_at < {mark}", (now - FORGET_AFTER * stale_after,))
    return beat_of(owner, leads == 1, rows, now, stale_after)


def beat_of(
    owner: str, leads: bool, rows: list[tuple[str, float]], now: float, stale_after: float
) -> EngineBeat:
    """The beat of ``owner`` from every engine's last beat (``rows``: owner, time)."""
    alive = tuple(o for o, at in rows if at >= now - stale_after or o == owner)
    gone = tuple(o for o, at in rows if at < now - stale_after and o != owner)
    return EngineBeat(leader=leads, alive=alive, gone=gone)
