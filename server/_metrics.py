"""``/metrics``: the daemon and its engine in Prometheus's text format.

The engine's figures are read when the page is asked for (executions by status from
the store, live executions, commits and checkpoints, node runs by outcome and their
durations, the store's commit times, each background service's health); the HTTP
figures are counted as requests are answered. Each app has its own registry, so that
two apps in one process (tests) do not mix their figures.

The daemons of ``prana serve --processes`` share their figures (:class:`SharedFigures`):
each writes its own to a file in a folder they share, at every scrape and every
``SHARE_EVERY`` seconds, and a scrape of any of them answers all of theirs, each
series labelled with its daemon's number (``process``), and the store's counts once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import anyio
import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

import prana

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SHARE_EVERY = 2.0  # seconds between the writes of a daemon's figures for the others


class _StoreFigures(Collector):
    """The executions in the store by status, as read for the current scrape."""

    def __init__(self) -> None:
        self.counts: Mapping[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        by_status = GaugeMetricFamily(
            "prana_executions", "Executions in the store, by status", labels=["status"]
        )
        for status, count in sorted(self.counts.items()):
            by_status.add_metric([status], count)
        yield by_status


class _EngineFigures(Collector):
    """What the engine says of itself, as read for the current scrape."""

    def __init__(self) -> None:
        self.statistics: prana.EngineStatistics | None = None
        self.health: prana.EngineHealth | None = None

    def collect(self) -> Iterator[Metric]:
        if self.statistics is not None:
            yield GaugeMetricFamily(
                "prana_live_executions",
                "Executions in this engine's memory now",
                value=self.statistics.live_executions,
            )
            yield CounterMetricFamily(
                "prana_store_commits", "Store transactions", value=self.statistics.commits
            )
            yield CounterMetricFamily(
                "prana_checkpoints", "Checkpoints saved", value=self.statistics.checkpoints
            )
            runs = CounterMetricFamily(
                "prana_node_runs", "Node runs reported by their workers, by outcome",
                labels=["outcome"],
            )  # fmt: skip
            for outcome, count in sorted(self.statistics.node_runs.items()):
                runs.add_metric([outcome], count)
            yield runs
            yield _histogram(
                "prana_node_run_duration_seconds",
                "How long node runs' actions took",
                self.statistics.node_run_times,
            )
            yield _histogram(
                "prana_store_commit_duration_seconds",
                "How long the store took to commit a transaction of checkpoints",
                self.statistics.commit_times,
            )
        if self.health is not None:
            up = GaugeMetricFamily(
                "prana_service_up", "1 while a background service runs without errors",
                labels=["service"],
            )  # fmt: skip
            failures = GaugeMetricFamily(
                "prana_service_failures", "A background service's failures in a row",
                labels=["service"],
            )  # fmt: skip
            for service in self.health.services:
                up.add_metric([service.name], float(service.state == "running"))
                failures.add_metric([service.name], service.failures)
            yield up
            yield failures


def _histogram(name: str, documentation: str, durations: prana.Durations) -> Metric:
    buckets: list[tuple[str, float]] = []
    below = 0
    for bound, count in zip(durations.bounds, durations.counts, strict=False):
        below += count
        buckets.append((repr(bound), below))
    buckets.append(("+Inf", durations.count))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=durations.total)


@attrs.frozen
class SharedFigures:
    """Where the daemons of ``prana serve --processes`` leave their figures for one
    another (a folder of their own), and this daemon's name there."""

    folder: Path
    name: str

    def write(self, page: bytes) -> None:
        """Leave this daemon's figures (whole: written aside, then moved in place)."""
        aside = self.folder / f".{self.name}.prom"
        aside.write_bytes(page)
        os.replace(aside, self.folder / f"{self.name}.prom")

    def merged(self) -> Collector:
        """Every daemon's figures, each series labelled with its daemon."""
        families: dict[str, Metric] = {}
        for path in sorted(self.folder.glob("*.prom")):
            for family in text_string_to_metric_families(path.read_text()):
                into = families.setdefault(
                    family.name,
                    Metric(family.name, family.documentation, family.type, family.unit),
                )
                for sample in family.samples:
                    labels = {**sample.labels, "process": path.stem}
                    into.add_sample(
                        sample.name, labels, sample.value, sample.timestamp, sample.exemplar
                    )
        return _Families(list(families.values()))


@attrs.define(eq=False)  # a registry keeps its collectors by identity
class _Families(Collector):
    families: list[Metric]

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class Metrics:
    """The figures of one app: HTTP requests as they are answered, the engine's
    when scraped; with ``shared``, every daemon's of ``prana serve --processes``."""

    def __init__(self, engine: prana.Engine, shared: SharedFigures | None = None) -> None:
        self._engine = engine
        self._shared = shared
        self._registry = CollectorRegistry(auto_describe=True)  # this process's figures
        self._figures = _EngineFigures()
        self._registry.register(self._figures)
        self._store = _StoreFigures()
        self._requests = Counter(
            "prana_http_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=self._registry,
        )
        self._durations = Histogram(
            "prana_http_request_duration_seconds",
            "Time to answer an HTTP request (to its first byte, for streams)",
            ["route"],
            registry=self._registry,
        )

    def answered(self, route: str, method: str, status: int, started: float) -> None:
        """A request to ``route`` was answered, ``started`` on ``time.perf_counter()``."""
        self._requests.labels(route, method, str(status)).inc()
        self._durations.labels(route).observe(time.perf_counter() - started)

    async def page(self) -> bytes:
        """The metrics page, with the engine's figures read now."""
        counts = await self._engine.count_executions()
        self._store.counts = {str(status): count for status, count in counts.items()}
        page = CollectorRegistry(auto_describe=True)
        page.register(self._store)
        if self._shared is None:
            self._read_engine()
            page.register(self._registry)
        else:
            self._shared.write(self._own())
            page.register(self._shared.merged())
        return generate_latest(page)

    def _read_engine(self) -> None:
        self._figures.statistics = self._engine.statistics()
        self._figures.health = self._engine.health()

    def _own(self) -> bytes:
        self._read_engine()
        return generate_latest(self._registry)

    async def share(self) -> None:
        """With figures shared, write this daemon's every ``SHARE_EVERY`` seconds, so
        that a scrape of another daemon finds them recent; until cancelled."""
        if self._shared is None:
            return
        while True:
            self._shared.write(self._own())
            await anyio.sleep(SHARE_EVERY)
