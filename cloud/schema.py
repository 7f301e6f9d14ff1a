"""The ClickHouse schema, as an ordered list of versioned migrations (plain SQL, no I/O here).

The same statements run on chDB and on a ClickHouse server. Every statement is idempotent
(`IF NOT EXISTS`), so a migration cut half-way is simply run again: a version is recorded in
`schema_migrations` only after all of its statements returned.

Exactly-once rests on two invariants of this schema (docs/cloud.md, "Exactly once"):

1. Every table the writer fills is a ReplacingMergeTree whose sorting key contains the
   identity of what one JetStream message carries (a reading: device, boot, seq; a batch:
   device, boot, first seq), and every row is a pure function of that one message. A message
   inserted twice (a crash between insert and ack) yields byte-identical rows under the same
   key, which `FINAL` (and, later, background merges) collapse to one.
2. Rollups are kept by materialized views as *partial* aggregates keyed by
   (device, metric, bucket, boot, batch_seq): one row per device batch and bucket. A
   redelivered batch produces the same partial rows under the same key, so they collapse like
   raw rows do; the views `readings_1m` / `readings_1h` sum the partials over `FINAL`. This
   holds only if a batch's rows reach the view in one insert block, which the writer
   guarantees (cloud/columns.py: one Arrow stream per insert, whole batches, far below
   `max_insert_block_size`).

Reads must therefore go through `FINAL` (`readings`), or the views (rollups).
"""

from __future__ import annotations

from dataclasses import dataclass

# Retention. Raw readings for ~13 months, rollups for ~5 years: a rollup row holds one
# batch's minute or hour, so it is cheap to keep for long.
READINGS_TTL_DAYS = 400
# Where the server has a volume of this name in the readings' storage policy, parts older
# than this move there (cloud/migrate.py `apply_tiering`); chDB has no such volume.
COLD_VOLUME = "cold"
COLD_AFTER_DAYS = 30
ROLLUP_1M_TTL_DAYS = 800
ROLLUP_1H_TTL_DAYS = 1830
# A plain MergeTree keeps no insert-dedup window unless told (default 0); the tables keep
# one for inserts made by hand with a token. The writer does not rely on it: it inserts
# with insert_deduplicate=0 (cloud/writer.py says why: non-replicated dedup is not
# crash-safe), and invariants 1 and 2 make any repeated insert collapse.
DEDUP_WINDOW = 1000

BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(6, 'UTC') DEFAULT now64(6)
) ENGINE = MergeTree ORDER BY version
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _rollup(suffix: str, bucket: str, ttl_days: int) -> tuple[str, ...]:
    table = f"rollup_{suffix}"
    return (
        f"""
CREATE TABLE IF NOT EXISTS {table} (
    device LowCardinality(String),
    metric LowCardinality(String),
    bucket DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    boot UInt32,
    batch_seq UInt64 CODEC(Delta, ZSTD(1)),
    n UInt32,
    total Float64,
    lo Float64,
    hi Float64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (device, metric, bucket, boot, batch_seq)
TTL bucket + INTERVAL {ttl_days} DAY DELETE
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
""",
        f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {table}_mv TO {table} AS
SELECT device, metric, {bucket}(ts) AS bucket, boot, batch_seq,
       toUInt32(count()) AS n, sum(value) AS total, min(value) AS lo, max(value) AS hi
FROM readings
GROUP BY device, metric, bucket, boot, batch_seq
""",
        f"""
CREATE VIEW IF NOT EXISTS readings_{suffix} AS
SELECT device, metric, bucket, sum(n) AS count, sum(total) AS sum,
       sum(total) / sum(n) AS avg, min(lo) AS min, max(hi) AS max
FROM {table} FINAL
GROUP BY device, metric, bucket
""",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "readings, batch lineage, per-minute and per-hour rollups",
        (
            # Codecs, measured by `just bench cloud` on pvlib's measured TMY3 weather and 1 s
            # sensor walks (compression ratios): ts DoubleDelta+ZSTD 11.7, Delta+ZSTD 11.3,
            # ZSTD 2.6; value ALP+ZSTD 8.7, ALP 8.0, ZSTD 6.0, FPC+ZSTD 4.3, Gorilla+ZSTD 3.4.
            # ALP wins on values but is beta in ClickHouse 26.9 (enable_alp_codec) and absent
            # from older servers, and this DDL must run on both engines: ZSTD(1) until then.
            f"""
CREATE TABLE IF NOT EXISTS readings (
    device LowCardinality(String),
    metric LowCardinality(String),
    ts DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value Float64 CODEC(ZSTD(1)),
    boot UInt32 CODEC(T64, ZSTD(1)),
    seq UInt64 CODEC(Delta, ZSTD(1)),
    batch_seq UInt64 CODEC(Delta, ZSTD(1)),
    device_ts Int64 CODEC(DoubleDelta, ZSTD(1)),
    time_source Enum8('device_clock' = 1, 'gateway_receive' = 2)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (device, metric, ts, boot, seq)
TTL toDateTime(ts) + INTERVAL {READINGS_TTL_DAYS} DAY DELETE
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
""",
            # One row per device batch: where it came from and when. The version column keeps
            # the latest insert of a redelivered batch; `deliveries` shows it was redelivered.
            f"""
CREATE TABLE IF NOT EXISTS batches (
    device LowCardinality(String),
    boot UInt32,
    seq UInt64,
    readings UInt32,
    gateway LowCardinality(String),
    spool_id UInt64,
    received DateTime64(6, 'UTC'),
    inserted DateTime64(6, 'UTC'),
    msg_id String,
    stream LowCardinality(String),
    stream_seq UInt64,
    deliveries UInt32,
    time_source Enum8('device_clock' = 1, 'gateway_receive' = 2)
) ENGINE = ReplacingMergeTree(inserted)
PARTITION BY toYYYYMM(received)
ORDER BY (device, boot, seq)
TTL toDateTime(received) + INTERVAL {READINGS_TTL_DAYS} DAY DELETE
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
""",
            *_rollup("1m", "toStartOfMinute", ROLLUP_1M_TTL_DAYS),
            *_rollup("1h", "toStartOfHour", ROLLUP_1H_TTL_DAYS),
        ),
    ),
    Migration(
        2,
        "devices registry with sparse metadata",
        (
            # Written by the API (later issue), read by queries joining on device. Sparse
            # metadata lives in a Map; the skipping indexes serve filters on it without
            # touching the write path of `readings`.
            """
CREATE TABLE IF NOT EXISTS devices (
    device String,
    location String DEFAULT '',
    firmware LowCardinality(String) DEFAULT '',
    tags Map(String, String),
    updated DateTime64(6, 'UTC') DEFAULT now64(6),
    INDEX firmware_idx firmware TYPE set(256) GRANULARITY 4,
    INDEX location_idx location TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX tag_keys_idx mapKeys(tags) TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX tag_values_idx mapValues(tags) TYPE bloom_filter(0.01) GRANULARITY 4
) ENGINE = ReplacingMergeTree(updated)
ORDER BY device
""",
        ),
    ),
    Migration(
        3,
        "device_health, one row per health report (HEALTH stream)",
        (
            f"""
CREATE TABLE IF NOT EXISTS device_health (
    device LowCardinality(String),
    boot UInt32,
    uptime_s UInt64,
    received DateTime64(6, 'UTC'),
    gateway LowCardinality(String),
    reset LowCardinality(String),
    heap_free UInt64,
    ring_used UInt64,
    ring_capacity UInt64,
    overflow UInt64,
    retransmits UInt64,
    quarantined UInt64,
    firmware LowCardinality(String),
    sampled_first Nullable(UInt64),
    sampled_last Nullable(UInt64),
    device_time_us Nullable(Int64),
    msg_id String,
    stream_seq UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received)
ORDER BY (device, boot, uptime_s)
TTL toDateTime(received) + INTERVAL {READINGS_TTL_DAYS} DAY DELETE
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
