"""Idempotency keys of spool records, and where each is published.

A telemetry batch's key is `<device>:<boot>:<seq>` (its first reading's identity), which is
also its JetStream `Nats-Msg-Id`; a health report's is `health:<device>:<boot>:<uptime>`.
Device ids contain no `:` (protocol/telemetry.cddl), so the number of fields tells the kinds
apart, and no `.`, so the device is one subject token.
"""

from __future__ import annotations

from protocol import Batch, HealthReport
from protocol.constants import SUBJECT_HEALTH, SUBJECT_TELEMETRY

_HEALTH = "health"


def telemetry_key(batch: Batch) -> str:
    return batch.msg_id


def health_key(report: HealthReport) -> str:
    return f"{_HEALTH}:{report.device}:{report.boot}:{report.uptime_s}"


def device_of(key: str) -> str:
    parts = key.split(":")
    return parts[1] if len(parts) == 4 else parts[0]


def route(gateway: str, key: str) -> tuple[str, str]:
    """(subject, Nats-Msg-Id) of a record. The Msg-Id of a health report keeps its kind
    prefix, so it can never collide with a batch's in a duplicate window."""
    parts = key.split(":")
    if len(parts) == 4 and parts[0] == _HEALTH:
        return f"{SUBJECT_HEALTH}.{gateway}.{parts[1]}", key
    if len(parts) == 3:
        return f"{SUBJECT_TELEMETRY}.{gateway}.{parts[0]}", key
    raise ValueError(f"not a spool record key: {key!r}")
