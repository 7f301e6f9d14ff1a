"""The gateway's Prometheus metrics, in a registry of its own (several gateways can share a
test process), served over HTTP when `metrics.port` is not 0."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes
        self.requests = Counter(
            "ringtail_gateway_requests",
            "CoAP requests answered, by resource and response code",
            ["resource", "code"],
            registry=r,
        )
        self.readings = Counter(
            "ringtail_gateway_readings", "readings acknowledged to devices", registry=r
        )
        self.published = Counter(
            "ringtail_gateway_published", "spool records acknowledged by JetStream", registry=r
        )
        self.duplicates = Counter(
            "ringtail_gateway_publish_duplicates",
            "publishes JetStream recognised as duplicates (already in the stream)",
            registry=r,
        )
        self.publish_errors = Counter(
            "ringtail_gateway_publish_errors", "failed publish attempts, retried", registry=r
        )
        self.publish_seconds = Histogram(
            "ringtail_gateway_publish_seconds",
            "publish to JetStream ack latency",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.nats_connected = Gauge(
            "ringtail_gateway_nats_connected", "1 while connected to NATS", registry=r
        )
        self._spool_stats: Callable[[], Any] | None = None
        r.register(_SpoolCollector(self))
        self._server: Any = None

    def watch_spool(self, stats: Callable[[], Any]) -> None:
        self._spool_stats = stats

    def serve(self, bind: str, port: int) -> None:
        self._server, _ = start_http_server(port, addr=bind, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _SpoolCollector:
    """Spool depth and age, read from the spool at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats_fn = self._metrics._spool_stats
        if stats_fn is None:
            return
        s = stats_fn()
        yield GaugeMetricFamily("ringtail_gateway_spool_bytes", "spool size on disk", s.bytes)
        yield GaugeMetricFamily(
            "ringtail_gateway_spool_unacked_records",
            "spool records not yet acknowledged by JetStream (publish lag, in records)",
            s.unacked,
        )
        age = 0.0 if s.oldest_unacked_us is None else time.time() - s.oldest_unacked_us / 1e6
        yield GaugeMetricFamily(
            "ringtail_gateway_spool_oldest_unacked_seconds",
            "age of the oldest record JetStream has not acknowledged (publish lag, in time)",
            max(age, 0.0),
        )
        yield GaugeMetricFamily(
            "ringtail_gateway_spool_segments", "spool segment files", s.segments
        )
