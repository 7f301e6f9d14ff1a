"""Gateway configuration: one TOML file, every field checked, errors that name the field.

    ringtail gateway run --config gateway.toml

With no file, the defaults serve CoAP on udp/5683 of every local address, publish to
nats://127.0.0.1:4222 and spool under ./var/gateway: the gateway runs out of the box beside a
local `nats-server -js`. `gateway/deploy/gateway.toml` is a commented example.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from protocol.envelope import GATEWAY_ID
from ringtail.config import ConfigError, check_sections, read_toml, require, section_values

__all__ = ["ConfigError", "GatewayConfig", "load_config", "parse_config"]


@dataclass(frozen=True, slots=True)
class CoapConfig:
    bind: str = "::"  # every local address, IPv4 included (dual-stack socket)
    port: int = 5683  # RFC 7252 §12.6: the default coap port
    # Per device: a token bucket of batches. A noisy device is answered 4.29 alone.
    rate_per_s: float = 20.0
    rate_burst: int = 40
    max_devices_tracked: int = 100_000  # bound on rate-limiter state; oldest forgotten first
    # Concurrent Block1 reassemblies (each at most one batch, 16 KiB); beyond it, 5.03.
    max_reassemblies: int = 1024
    # Recent requests remembered to answer a retransmission (same Message ID) from memory;
    # oldest forgotten first. A forgotten one is handled again: acknowledged, not re-stored.
    max_exchanges_tracked: int = 16_384
    retry_after_s: int = 5  # Max-Age on 5.03: when a device should try again


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    dir: Path = Path("var/gateway")
    max_bytes: int = 256 << 20  # the bound: a full spool answers 5.03 (backpressure)
    segment_bytes: int = 4 << 20
    sync: bool = True  # fdatasync before acknowledging; false is unsafe, for benchmarks only
    commit_delay_ms: float = 0.0  # wait this long to gather more appends into one fsync
    max_pending: int = 1024  # appends waiting for their fsync; beyond it, 5.03


@dataclass(frozen=True, slots=True)
class NatsConfig:
    url: str = "nats://127.0.0.1:4222"
    stream: str = "TELEMETRY"
    health_stream: str = "HEALTH"
    # Longer than the longest time a batch can be re-sent or re-published: a device retries
    # for minutes, a gateway republishes after a restart; 2 hours covers both.
    duplicate_window_s: int = 2 * 3600
    stream_max_bytes: int = 10 << 30  # full stream: discard-new pushes back on the gateway
    stream_max_age_s: int = 7 * 24 * 3600
    max_in_flight: int = 64  # publishes awaiting their JetStream ack (one per device)
    publish_timeout_s: float = 5.0
    reconnect_wait_s: float = 1.0  # first backoff; doubles up to reconnect_max_wait_s
    reconnect_max_wait_s: float = 30.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    bind: str = "127.0.0.1"
    port: int = 9464  # 0 turns the Prometheus endpoint off


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    id: str = field(default_factory=lambda: default_gateway_id())
    drain_timeout_s: float = 10.0  # on SIGTERM: how long to keep publishing before exit
    coap: CoapConfig = field(default_factory=CoapConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    nats: NatsConfig = field(default_factory=NatsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


def default_gateway_id() -> str:
    """The host name, made a valid gateway id (one NATS subject token)."""
    name = "".join(c if c.isalnum() or c in "_-" else "-" for c in socket.gethostname())
    name = name.strip("-_")[:64]
    return name if name and GATEWAY_ID.fullmatch(name) else "gateway"


_SECTIONS = {"coap": CoapConfig, "spool": SpoolConfig, "nats": NatsConfig, "metrics": MetricsConfig}


def load_config(path: Path | None) -> GatewayConfig:
    """Read and check a config file; `None` gives the defaults. Raises `ConfigError`."""
    if path is None:
        return GatewayConfig()
    return parse_config(read_toml(path), source=str(path))


def parse_config(raw: dict[str, Any], source: str = "config") -> GatewayConfig:
    check_sections(raw, {*_SECTIONS, "gateway"}, source)
    top = {f.name for f in fields(GatewayConfig)} - set(_SECTIONS)
    kwargs = section_values(GatewayConfig, raw.get("gateway", {}), "gateway", source, only=top)
    for name, cls in _SECTIONS.items():
        kwargs[name] = cls(**section_values(cls, raw.get(name, {}), name, source))
    config = GatewayConfig(**kwargs)
    _check(config, source)
    return config


def _check(c: GatewayConfig, source: str) -> None:
    def need(ok: bool, name: str, what: str) -> None:
        require(ok, source, name, what)

    need(
        GATEWAY_ID.fullmatch(c.id) is not None,
        "gateway.id",
        f"{c.id!r} is not a valid id (letters, digits, _ and -, at most 64)",
    )
    need(c.drain_timeout_s >= 0, "gateway.drain_timeout_s", "must be 0 or more")
    need(0 <= c.coap.port <= 65535, "coap.port", "must be 0..65535")
    need(c.coap.rate_per_s > 0, "coap.rate_per_s", "must be more than 0")
    need(c.coap.rate_burst >= 1, "coap.rate_burst", "must be at least 1")
    need(c.coap.max_devices_tracked >= 1, "coap.max_devices_tracked", "must be at least 1")
    need(c.coap.max_reassemblies >= 1, "coap.max_reassemblies", "must be at least 1")
    need(c.coap.max_exchanges_tracked >= 1, "coap.max_exchanges_tracked", "must be at least 1")
    need(1 <= c.coap.retry_after_s <= 3600, "coap.retry_after_s", "must be 1..3600")
    need(c.spool.segment_bytes >= 64 << 10, "spool.segment_bytes", "must be at least 65536")
    need(
        c.spool.max_bytes >= 2 * c.spool.segment_bytes,
        "spool.max_bytes",
        "must hold at least two segments (2 x spool.segment_bytes)",
    )
    need(c.spool.commit_delay_ms >= 0, "spool.commit_delay_ms", "must be 0 or more")
    need(c.spool.max_pending >= 1, "spool.max_pending", "must be at least 1")
    need(
        c.nats.url.startswith(("nats://", "tls://")),
        "nats.url",
        f"{c.nats.url!r} is not a nats:// or tls:// URL",
    )
    for name in ("stream", "health_stream"):
        value = getattr(c.nats, name)
        need(
            value.replace("_", "").replace("-", "").isalnum(),
            f"nats.{name}",
            f"{value!r} is not a valid stream name",
        )
    need(c.nats.duplicate_window_s >= 60, "nats.duplicate_window_s", "must be at least 60")
    need(c.nats.stream_max_bytes >= 1 << 20, "nats.stream_max_bytes", "must be at least 1 MiB")
    need(
        c.nats.stream_max_age_s >= c.nats.duplicate_window_s,
        "nats.stream_max_age_s",
        "must be at least nats.duplicate_window_s",
    )
    need(c.nats.max_in_flight >= 1, "nats.max_in_flight", "must be at least 1")
    need(c.nats.publish_timeout_s > 0, "nats.publish_timeout_s", "must be more than 0")
    need(
        0 < c.nats.reconnect_wait_s <= c.nats.reconnect_max_wait_s,
        "nats.reconnect_wait_s",
        "must be more than 0 and at most nats.reconnect_max_wait_s",
    )
    need(0 <= c.metrics.port <= 65535, "metrics.port", "must be 0..65535")
