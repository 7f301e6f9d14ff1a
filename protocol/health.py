"""Health reports: the payload of `POST /h`, parsed into a validated `HealthReport`."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.batch import DEVICE_ID
from protocol.constants import (
    BOOT_REASONS,
    HEALTH_BOOT,
    HEALTH_DEVICE,
    HEALTH_DEVICE_TIME,
    HEALTH_FIRMWARE,
    HEALTH_HEAP_FREE,
    HEALTH_OVERFLOW,
    HEALTH_QUARANTINED,
    HEALTH_RESET,
    HEALTH_RETRANSMITS,
    HEALTH_RING,
    HEALTH_SAMPLED,
    HEALTH_UPTIME,
    INT64_MAX,
    KEY_VERSION,
    UINT32_MAX,
)
from protocol.decoding import check_int64, check_map, check_text, check_uint, decode_message, fail

_KEYS = {
    KEY_VERSION: "v",
    HEALTH_DEVICE: "device",
    HEALTH_BOOT: "boot",
    HEALTH_UPTIME: "uptime",
    HEALTH_RESET: "reset",
    HEALTH_HEAP_FREE: "heap-free",
    HEALTH_RING: "ring",
    HEALTH_OVERFLOW: "overflow",
    HEALTH_RETRANSMITS: "retransmits",
    HEALTH_SAMPLED: "sampled",
    HEALTH_QUARANTINED: "quarantined",
    HEALTH_FIRMWARE: "firmware",
    HEALTH_DEVICE_TIME: "device-time",
}
_REQUIRED = frozenset(_KEYS) - {HEALTH_QUARANTINED, HEALTH_FIRMWARE, HEALTH_DEVICE_TIME}
MAX_HEALTH_BYTES = 1024  # a report is under 100 bytes; this leaves room for growth


@dataclass(frozen=True, slots=True)
class HealthReport:
    device: str
    boot: int
    uptime_s: int
    reset: str
    heap_free: int
    ring_used: int
    ring_capacity: int
    overflow: int
    retransmits: int
    sampled: tuple[int, int] | None
    quarantined: int = 0
    firmware: str | None = None
    device_time_us: int | None = None


def parse_health(payload: bytes | bytearray | memoryview) -> HealthReport:
    """Validate one health report; raises `ProtocolError` like `parse_batch`."""
    m = check_map(decode_message(payload, MAX_HEALTH_BYTES), "", _KEYS, _REQUIRED)
    reason = m[HEALTH_RESET]
    if type(reason) is not int or reason not in BOOT_REASONS:
        raise fail(f"unknown boot reason {reason!r}", "reset")
    ring = m[HEALTH_RING]
    if type(ring) is not list or len(ring) != 2:
        raise fail("expected [used, capacity]", "ring")
    used = check_uint(ring[0], "ring[0]", INT64_MAX)
    capacity = check_uint(ring[1], "ring[1]", INT64_MAX)
    sampled = m[HEALTH_SAMPLED]
    if sampled is not None:
        if type(sampled) is not list or len(sampled) != 2:
            raise fail("expected [first, last] or null", "sampled")
        first = check_uint(sampled[0], "sampled[0]", INT64_MAX)
        last = check_uint(sampled[1], "sampled[1]", INT64_MAX)
        if last < first:
            raise fail(f"last sequence number {last} is before first {first}", "sampled")
        sampled = (first, last)
    if used > capacity:
        raise fail(f"ring fill {used} exceeds its capacity {capacity}", "ring")
    firmware = m.get(HEALTH_FIRMWARE)
    if firmware is not None and (type(firmware) is not str or not 1 <= len(firmware) <= 32):
        raise fail("expected a text of 1 to 32 characters", "firmware")
    device_time = m.get(HEALTH_DEVICE_TIME)
    return HealthReport(
        device=check_text(m[HEALTH_DEVICE], "device", DEVICE_ID),
        boot=check_uint(m[HEALTH_BOOT], "boot", UINT32_MAX),
        uptime_s=check_uint(m[HEALTH_UPTIME], "uptime", INT64_MAX),
        reset=BOOT_REASONS[reason],
        heap_free=check_uint(m[HEALTH_HEAP_FREE], "heap-free", INT64_MAX),
        ring_used=used,
        ring_capacity=capacity,
        overflow=check_uint(m[HEALTH_OVERFLOW], "overflow", INT64_MAX),
        retransmits=check_uint(m[HEALTH_RETRANSMITS], "retransmits", INT64_MAX),
        sampled=sampled,
        quarantined=check_uint(m.get(HEALTH_QUARANTINED, 0), "quarantined", INT64_MAX),
        firmware=firmware,
        device_time_us=None if device_time is None else check_int64(device_time, "device-time"),
    )
