"""What the gateway does with one device payload, apart from CoAP: validate, rate-limit,
make durable, answer. Pure of transport, so the CoAP resources stay thin.

Order of checks, cheapest and most final first: content-format (4.15), the payload
(protocol.parse_*: 4.13, 4.00, 4.22), an already durable key (acknowledged again, not
stored again), the device's rate (4.29), then the spool (5.03 when full). A refused request
changes nothing stored.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gateway.keys import health_key, telemetry_key
from gateway.metrics import Metrics
from gateway.spool import Spool, SpoolFull
from protocol import (
    ProtocolError,
    encode_ack,
    encode_error,
    encode_health_ack,
    parse_batch,
    parse_health,
)
from protocol.constants import (
    CHANGED,
    CONTENT_FORMAT_CBOR,
    SERVICE_UNAVAILABLE,
    TOO_MANY_REQUESTS,
    UNSUPPORTED_CONTENT_FORMAT,
    code_text,
)

log = logging.getLogger("ringtail.gateway.ingest")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    body: bytes
    max_age_s: int | None = None  # the CoAP Max-Age option: when to retry (4.29, 5.03)


class RateLimiter:
    """A token bucket per device; state for at most `max_devices` (least recent forgotten,
    which only ever makes a forgotten device's next request more likely to pass)."""

    def __init__(self, rate_per_s: float, burst: int, max_devices: int) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max = max_devices
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, device: str, now: float | None = None) -> float:
        """0 if the device may send now (a token is taken), else seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(device, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self._rate
        self._buckets[device] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait


class Ingest:
    def __init__(
        self, spool: Spool, limiter: RateLimiter, metrics: Metrics, retry_after_s: int
    ) -> None:
        self._spool = spool
        self._limiter = limiter
        self._metrics = metrics
        self._retry_after_s = retry_after_s
        self._counters: dict[tuple[str, int], Any] = {}

    async def telemetry(self, payload: bytes, content_format: int | None) -> Reply:
        reply = await self._handle(payload, content_format, health=False)
        self._count("t", reply.code)
        return reply

    async def health(self, payload: bytes, content_format: int | None) -> Reply:
        reply = await self._handle(payload, content_format, health=True)
        self._count("h", reply.code)
        return reply

    def _count(self, resource: str, code: int) -> None:
        counter = self._counters.get((resource, code))
        if counter is None:  # a handful of (resource, code) pairs: looked up once each
            counter = self._metrics.requests.labels(resource, code_text(code))
            self._counters[(resource, code)] = counter
        counter.inc()

    async def _handle(self, payload: bytes, content_format: int | None, health: bool) -> Reply:
        if content_format != CONTENT_FORMAT_CBOR:
            return self._error(
                UNSUPPORTED_CONTENT_FORMAT,
                f"Content-Format must be {CONTENT_FORMAT_CBOR} (application/cbor)",
            )
        try:
            if health:
                report = parse_health(payload)
                key, device = health_key(report), report.device
            else:
                batch = parse_batch(payload)
                key, device = telemetry_key(batch), batch.device
        except ProtocolError as e:
            return Reply(e.code, encode_error(e, _now_us()))

        if self._spool.lookup(key) is None:
            wait = self._limiter.take(device)
            if wait > 0:
                return self._error(
                    TOO_MANY_REQUESTS,
                    f"device {device} over its rate limit",
                    max_age_s=max(1, math.ceil(wait)),
                )
            try:
                await self._spool.append(key, payload)
            except SpoolFull:
                return self._error(
                    SERVICE_UNAVAILABLE, "gateway spool full", max_age_s=self._retry_after_s
                )
            except OSError as e:
                log.error("spool append failed: %s", e)
                return self._error(
                    SERVICE_UNAVAILABLE, "gateway storage error", max_age_s=self._retry_after_s
                )
        if health:
            return Reply(CHANGED, encode_health_ack(_now_us()))
        self._metrics.readings.inc(batch.readings)
        return Reply(CHANGED, encode_ack(batch.boot, batch.last_seq, _now_us()))

    def _error(self, code: int, reason: str, max_age_s: int | None = None) -> Reply:
        return Reply(code, encode_error((code, reason), _now_us()), max_age_s)


def _now_us() -> int:
    return time.time_ns() // 1000
