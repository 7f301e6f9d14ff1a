"""Writer configuration: a TOML file, then the environment, every field checked by name.

    ringtail cloud writer --config writer.toml

With neither, the writer reads nats://127.0.0.1:4222 and keeps chDB data under
./var/clickhouse. Environment variables override the file:

    NATS_URL            nats.url
    CLICKHOUSE_URL      clickhouse.url (set: a ClickHouse server through clickhouse-connect;
                        empty or unset: chDB in this process)
    RINGTAIL_CHDB_PATH  clickhouse.chdb_path
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ringtail.config import (
    ConfigError,
    check_sections,
    convert,
    read_toml,
    require,
    section_values,
)

__all__ = ["ConfigError", "WriterConfig", "load_config"]


@dataclass(frozen=True, slots=True)
class NatsSection:
    url: str = "nats://127.0.0.1:4222"
    stream: str = "TELEMETRY"  # made by the gateway; the writer waits for it, never creates it
    subjects: str = "tlm.>"
    durable: str = "ringtail-writer"
    # Health reports: a second durable consumer (`<durable>-health`) into device_health.
    # Empty health_stream turns it off. Like TELEMETRY, HEALTH is the gateway's.
    health_stream: str = "HEALTH"
    health_subjects: str = "health.>"
    deadletter_stream: str = "DEADLETTER"  # made by the writer if missing
    deadletter_prefix: str = "deadletter"  # poison goes to <prefix>.<original subject>
    # A message not acked within ack_wait_s is redelivered: longer than the slowest insert
    # we want to wait for, short enough that a crashed writer's batch comes back soon.
    ack_wait_s: float = 30.0
    # Messages per fetch. Each fetch costs a few inserts of fixed overhead (~30 ms in chDB),
    # so small batches need many per fetch: 2048 took 64-reading batches from 0.08x to
    # 0.46x of a bulk insert (`just bench cloud`); memory stays bounded by 2048 x 16 KiB.
    fetch_messages: int = 2048
    fetch_timeout_s: float = 1.0  # an idle fetch returns after this long
    reconnect_wait_s: float = 1.0
    wait_stream_s: float = 2.0  # interval between checks while TELEMETRY is missing


@dataclass(frozen=True, slots=True)
class ClickhouseSection:
    url: str = ""  # empty: chDB in-process
    chdb_path: Path = Path("var/clickhouse")
    timeout_s: float = 30.0  # connect and per-statement timeout (server)
    # Far below max_insert_block_size (1,048,576 rows, set on every insert), so an insert
    # is one block and a batch's rows reach the rollup views together (cloud/schema.py).
    max_rows_per_insert: int = 500_000
    retry_wait_s: float = 0.5  # first backoff after a failed insert; doubles up to the max
    retry_max_wait_s: float = 15.0


@dataclass(frozen=True, slots=True)
class WriterConfig:
    nats: NatsSection = field(default_factory=NatsSection)
    clickhouse: ClickhouseSection = field(default_factory=ClickhouseSection)


_SECTIONS = {"nats": NatsSection, "clickhouse": ClickhouseSection}
_ENV = {
    "NATS_URL": ("nats", "url"),
    "CLICKHOUSE_URL": ("clickhouse", "url"),
    "RINGTAIL_CHDB_PATH": ("clickhouse", "chdb_path"),
}
MAX_INSERT_BLOCK_ROWS = 1_048_576


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> WriterConfig:
    """The file (if any), then the environment, checked. Raises `ConfigError`."""
    raw: dict[str, Any] = {} if path is None else read_toml(path)
    source = "config" if path is None else str(path)
    # [api] belongs to cloud/api/settings.py: one file can serve the writer and the API.
    check_sections(raw, {*_SECTIONS, "api"}, source)
    sections = {
        name: cls(**section_values(cls, raw.get(name, {}), name, source))
        for name, cls in _SECTIONS.items()
    }
    env = os.environ if env is None else env
    for var, (section, name) in _ENV.items():
        if var in env:
            f = next(f for f in fields(_SECTIONS[section]) if f.name == name)
            value = convert(env[var], f.type, f"{section}.{name} (from ${var})", "environment")
            sections[section] = replace(sections[section], **{name: value})
    config = WriterConfig(**sections)
    check_config(config, source)
    return config


def check_config(c: WriterConfig, source: str) -> None:
    """The cross-field rules; raises `ConfigError` naming the field."""

    def need(ok: bool, name: str, what: str) -> None:
        require(ok, source, name, what)

    n, ch = c.nats, c.clickhouse
    need(n.url.startswith(("nats://", "tls://")), "nats.url", f"{n.url!r} is not a nats:// URL")
    for name in ("stream", "deadletter_stream", "durable"):
        value = getattr(n, name)
        need(
            bool(value) and value.replace("_", "").replace("-", "").isalnum(),
            f"nats.{name}",
            f"{value!r} is not a valid name (letters, digits, _ and -)",
        )
    for name in ("subjects", "health_subjects"):
        value = getattr(n, name)
        need(bool(value) and " " not in value, f"nats.{name}", f"{value!r} is not a subject filter")
    need(
        n.health_stream == "" or n.health_stream.replace("_", "").replace("-", "").isalnum(),
        "nats.health_stream",
        f"{n.health_stream!r} is not a valid name (empty turns health off)",
    )
    need(
        bool(n.deadletter_prefix) and n.deadletter_prefix.replace("_", "").isalnum(),
        "nats.deadletter_prefix",
        f"{n.deadletter_prefix!r} is not one subject token",
    )
    need(n.ack_wait_s >= 0.5, "nats.ack_wait_s", "must be at least 0.5")
    need(1 <= n.fetch_messages <= 10_000, "nats.fetch_messages", "must be 1..10000")
    need(n.fetch_timeout_s > 0, "nats.fetch_timeout_s", "must be more than 0")
    need(n.reconnect_wait_s > 0, "nats.reconnect_wait_s", "must be more than 0")
    need(n.wait_stream_s > 0, "nats.wait_stream_s", "must be more than 0")
    need(
        ch.url == "" or ch.url.startswith(("http://", "https://")),
        "clickhouse.url",
        f"{ch.url!r} is not an http:// or https:// URL (empty selects chDB)",
    )
    need(ch.timeout_s > 0, "clickhouse.timeout_s", "must be more than 0")
    need(
        16_384 <= ch.max_rows_per_insert <= MAX_INSERT_BLOCK_ROWS // 2,
        "clickhouse.max_rows_per_insert",
        f"must be 16384..{MAX_INSERT_BLOCK_ROWS // 2} (one batch holds up to 16384 readings)",
    )
    need(
        0 < ch.retry_wait_s <= ch.retry_max_wait_s,
        "clickhouse.retry_wait_s",
        "must be more than 0 and at most clickhouse.retry_max_wait_s",
    )
