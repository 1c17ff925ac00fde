"""`GET /metrics` in the Prometheus text format, per provider and model.

Counters and histograms are fed once per finished request (a few label lookups); the
in-flight and circuit gauges are read from the health registry when Prometheus scrapes.
A registry per Runtime, not prometheus_client's global one, so each process (and each
test) counts only its own traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.health import CircuitState, HealthRegistry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class _HealthCollector(Collector):
    def __init__(self, health: HealthRegistry) -> None:
        self.health = health

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_flight = GaugeMetricFamily(
            "anthropic_proxy_in_flight", "Attempts in progress", labels=["provider", "model"]
        )
        circuit = GaugeMetricFamily(
            "anthropic_proxy_circuit_state",
            "1 for the circuit's current state",
            labels=["provider", "model", "state"],
        )
        for (provider, model), view in self.health.snapshot().items():
            in_flight.add_metric([provider, model], view.in_flight)
            for state in CircuitState:
                circuit.add_metric([provider, model, state.value], float(view.state is state))
        yield in_flight
        yield circuit


class _LogbookCollector(Collector):
    """The request-log writer's counts, read when Prometheus scrapes."""

    def __init__(self, logbook: Any) -> None:
        self.logbook = logbook

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        status = self.logbook.status()
        rows = CounterMetricFamily(
            "anthropic_proxy_log_rows", "Request-log entries, by fate", labels=["fate"]
        )
        for fate in ("written", "dropped", "rejected"):
            rows.add_metric([fate], status[fate])
        yield rows
        yield GaugeMetricFamily(
            "anthropic_proxy_log_rows_waiting",
            "Request-log entries recorded and not yet written",
            value=status["waiting"],
        )
        yield GaugeMetricFamily(
            "anthropic_proxy_log_failing_seconds",
            "How long the request-log writer has been failing (0: it is not)",
            value=status["failing_for_seconds"] or 0.0,
        )


class PromMetrics:
    def __init__(self, health: HealthRegistry, logbook: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        route = ["provider", "model"]
        self.requests = Counter(
            "anthropic_proxy_requests",
            "Requests finished",
            [*route, "status", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "anthropic_proxy_errors",
            "Requests that ended in an error",
            [*route, "error_type"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "anthropic_proxy_attempts",
            "Attempts, by outcome",
            [*route, "outcome"],
            registry=self.registry,
        )
        self.failovers = Counter(
            "anthropic_proxy_failovers",
            "Requests served by a route other than the first tried",
            route,
            registry=self.registry,
        )
        self.tokens = Counter(
            "anthropic_proxy_tokens",
            "Tokens, as the providers report them",
            [*route, "kind"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "anthropic_proxy_ttft_seconds",
            "Time to first token",
            route,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "anthropic_proxy_duration_seconds",
            "Request duration",
            route,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_HealthCollector(health))
        if logbook is not None:
            self.registry.register(_LogbookCollector(logbook))

    def observe(self, entry: Any) -> None:
        """Count one finished request (an `logbook.Entry`)."""
        provider, model = entry.provider or "-", entry.upstream_model or "-"
        self.requests.labels(provider, model, str(entry.status), entry.outcome).inc()
        if entry.outcome == "error":
            self.errors.labels(provider, model, entry.error_type or "unknown").inc()
        for attempt in entry.attempts:
            self.attempts.labels(attempt.provider, attempt.model, attempt.outcome).inc()
        if entry.provider and len(entry.attempts) > 1:
            self.failovers.labels(provider, model).inc()
        for kind in ("input", "output", "cache_read", "cache_creation"):
            count = getattr(entry, f"{kind}_tokens")
            if count:
                self.tokens.labels(provider, model, kind).inc(count)
        if entry.ttft_ms is not None:
            self.ttft.labels(provider, model).observe(entry.ttft_ms / 1000)
        self.duration.labels(provider, model).observe(entry.duration_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
