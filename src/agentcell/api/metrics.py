"""Prometheus metrics, one registry per app: HTTP requests, execs, cells by state."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CELL_STATES = ("running", "paused", "stopped", "removed", "dead", "pooled")


class _CellStates(Collector):
    """Counts cells by state when scraped."""

    def __init__(self, source: Callable[[], list[str]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("agentcell_cells", "cells by state", labels=["state"])
        states = Tally(self.source())
        for state in CELL_STATES:
            family.add_metric([state], states.get(state, 0))
        yield family


class Metrics:
    def __init__(self, cell_states: Callable[[], list[str]]) -> None:
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
        r.register(_CellStates(cell_states))

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
