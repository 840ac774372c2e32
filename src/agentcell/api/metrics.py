"""Prometheus metrics, one registry per app: HTTP requests, execs, cells by state, the cells'
own counters, jobs by state and their queue wait."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentcell.sandbox.service import CellCounters, CellService, CellStatus
from agentcell.schemas import JobState

CELL_STATES = ("running", "paused", "stopped", "removed", "dead", "pooled")
JOB_STATES = get_args(JobState)


class _Cells(Collector):
    """Cells by state and the cells' counters, as last read from the ``CellService`` (the
    /metrics route reads them just before each scrape: the service is async, a collector not)."""

    def __init__(self) -> None:
        self.cells: list[CellStatus] = []
        self.counters = CellCounters(reaper_errors=0)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("agentcell_cells", "cells by state", labels=["state"])
        states = Tally(c.state.value if c.owner else "pooled" for c in self.cells)
        for state in CELL_STATES:
            family.add_metric([state], states.get(state, 0))
        yield family
        yield CounterMetricFamily(
            "agentcell_reaper_errors",
            "idle-tier rounds that failed (each is logged; the reaper goes on)",
            value=self.counters.reaper_errors,
        )


class _Jobs(Collector):
    """Jobs by state, as last read from the store (before each scrape, as the cells are)."""

    def __init__(self) -> None:
        self.by_state: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("agentcell_jobs", "jobs by state", labels=["state"])
        for state in JOB_STATES:
            family.add_metric([state], self.by_state.get(state, 0))
        yield family


class Metrics:
    def __init__(self) -> None:
        self._cells = _Cells()
        self._jobs = _Jobs()
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "agentcell_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "agentcell_http_request_duration_seconds",
            "HTTP latency to the start of the response",
            ["method", "route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.execs = Counter(
            "agentcell_execs", "execs in cells", ["language", "outcome"], registry=r
        )
        self.exec_latency = Histogram(
            "agentcell_exec_duration_seconds",
            "exec duration inside the cell",
            ["language"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
        )
        self.job_wait = Histogram(
            "agentcell_job_queue_wait_seconds",
            "from a job's creation to its start",
            ["kind"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600),
        )
        self.jobs_ended = Counter(
            "agentcell_jobs_ended", "jobs ended", ["kind", "state"], registry=r
        )
        r.register(self._cells)
        r.register(self._jobs)

    async def read_cells(self, cells: CellService) -> None:
        """Take the cells' states and counters in, for the next scrape."""
        self._cells.cells = await cells.overview()
        self._cells.counters = await cells.counters()

    def read_jobs(self, by_state: dict[str, int]) -> None:
        self._jobs.by_state = by_state

    def observe_job_start(self, kind: str, waited_s: float) -> None:
        self.job_wait.labels(kind).observe(waited_s)

    def observe_job_end(self, kind: str, state: str) -> None:
        self.jobs_ended.labels(kind, state).inc()

    def observe_exec(self, language: str, ok: bool, duration_ms: float) -> None:
        self.execs.labels(language, "ok" if ok else "error").inc()
        self.exec_latency.labels(language).observe(duration_ms / 1000)


class MetricsMiddleware:
    """Pure ASGI (no buffering), so streamed responses pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "unmatched")
                method = scope["method"]
                self.metrics.http_latency.labels(method, route).observe(
                    time.perf_counter() - started
                )
                self.metrics.http_requests.labels(method, route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, send_wrapper)
