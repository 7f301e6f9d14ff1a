"""Health report messages (HEALTH stream) → `device_health` columns. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from cloud.columns import Lineage, open_message
from protocol import Envelope, HealthReport, parse_health

HEALTH_COLUMNS = [
    "device",
    "boot",
    "uptime_s",
    "received",
    "gateway",
    "reset",
    "heap_free",
    "ring_used",
    "ring_capacity",
    "overflow",
    "retransmits",
    "quarantined",
    "firmware",
    "sampled_first",
    "sampled_last",
    "device_time_us",
    "msg_id",
    "stream_seq",
]
_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True, slots=True)
class DecodedHealth:
    envelope: Envelope
    report: HealthReport


def decode_health(body: bytes, subject_device: str | None = None) -> DecodedHealth:
    """Validate one health message body; raises `Poison` with the reason."""
    env, report = open_message(body, parse_health, "health report", subject_device)
    return DecodedHealth(env, report)


def health_table(decoded: list[DecodedHealth], lineage: list[Lineage]) -> pa.RecordBatch:
    """One `device_health` row per report: a pure function of its message (exactly once
    rests on it, as for readings: cloud/schema.py)."""
    r = [d.report for d in decoded]

    def col(values: list, kind: pa.DataType) -> pa.Array:
        return pa.array(values, kind)

    return pa.RecordBatch.from_arrays(
        [
            col([x.device for x in r], pa.string()),
            col([x.boot for x in r], pa.uint32()),
            col([x.uptime_s for x in r], pa.uint64()),
            col([d.envelope.received_us for d in decoded], _TS),
            col([d.envelope.gateway for d in decoded], pa.string()),
            col([x.reset for x in r], pa.string()),
            col([x.heap_free for x in r], pa.uint64()),
            col([x.ring_used for x in r], pa.uint64()),
            col([x.ring_capacity for x in r], pa.uint64()),
            col([x.overflow for x in r], pa.uint64()),
            col([x.retransmits for x in r], pa.uint64()),
            col([x.quarantined for x in r], pa.uint64()),
            col([x.firmware or "" for x in r], pa.string()),
            col([x.sampled[0] if x.sampled else None for x in r], pa.uint64()),
            col([x.sampled[1] if x.sampled else None for x in r], pa.uint64()),
            col([x.device_time_us for x in r], pa.int64()),
            col([x.msg_id for x in lineage], pa.string()),
            col([x.stream_seq for x in lineage], pa.uint64()),
        ],
        names=HEALTH_COLUMNS,
    )
