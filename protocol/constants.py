"""Numbers of the wire contract: CoAP resources and codes, CBOR map keys, and limits.

Each limit has one home here, with its unit in its name and the reason for its value.
protocol/telemetry.cddl is the normative schema; the keys below mirror it, and a test holds
the two together.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# --- CoAP (RFC 7252) -----------------------------------------------------------------------
PATH_TELEMETRY = "t"  # POST: one telemetry batch
PATH_HEALTH = "h"  # POST: one health report
CONTENT_FORMAT_CBOR = 60  # application/cbor, RFC 7252 §12.3 / RFC 8949 §9.5

# Response codes as the CoAP code byte (class << 5 | detail), RFC 7252 §12.1.2.
CHANGED = 0x44  # 2.04: batch durable; body is a telemetry-ack
BAD_REQUEST = 0x80  # 4.00: not CBOR we accept (malformed, or beyond the decoder's limits)
REQUEST_ENTITY_TOO_LARGE = 0x8D  # 4.13: payload or reading count over the limits below
UNSUPPORTED_CONTENT_FORMAT = 0x8F  # 4.15: content-format other than application/cbor
UNPROCESSABLE_ENTITY = 0x96  # 4.22: CBOR that does not match the schema (RFC 8132)
TOO_MANY_REQUESTS = 0x9D  # 4.29: per-device rate limit exceeded (RFC 8516)
SERVICE_UNAVAILABLE = 0xA3  # 5.03: gateway saturated; Max-Age says when to retry


def code_text(code: int) -> str:
    """`0x96` -> `"4.22"`: the dotted form RFC 7252 uses."""
    return f"{code >> 5}.{code & 0x1F:02d}"


# --- CBOR map keys (protocol/telemetry.cddl) ---------------------------------------------
# Every message starts with key 0, the schema version.
KEY_VERSION = 0

# telemetry-batch
BATCH_DEVICE = 1
BATCH_BOOT = 2
BATCH_SEQ = 3
BATCH_T0 = 4
BATCH_CLOCK = 5
BATCH_SERIES = 6

# series
SERIES_METRIC = 0
SERIES_TS = 1
SERIES_VALUES = 2
SERIES_BLOCK = 3
SERIES_COUNT = 4

# telemetry-ack
ACK_BOOT = 1
ACK_HIGH_SEQ = 2
ACK_GATEWAY_TIME = 3

# health-ack
HEALTH_ACK_GATEWAY_TIME = 1

# error-body
ERROR_CODE = 1
ERROR_REASON = 2
ERROR_GATEWAY_TIME = 3

# health-report
HEALTH_DEVICE = 1
HEALTH_BOOT = 2
HEALTH_UPTIME = 3
HEALTH_RESET = 4
HEALTH_HEAP_FREE = 5
HEALTH_RING = 6
HEALTH_OVERFLOW = 7
HEALTH_RETRANSMITS = 8
HEALTH_SAMPLED = 9
HEALTH_QUARANTINED = 10
HEALTH_FIRMWARE = 11
HEALTH_DEVICE_TIME = 12

# gateway-envelope
ENVELOPE_GATEWAY = 1
ENVELOPE_RECEIVED = 2
ENVELOPE_SPOOL_ID = 3
ENVELOPE_PAYLOAD = 4

# NATS subjects (gateway -> cloud): one subject per device keeps a device's messages in order.
SUBJECT_TELEMETRY = "tlm"  # tlm.<gateway>.<device>
SUBJECT_HEALTH = "health"  # health.<gateway>.<device>

BOOT_REASONS = {
    0: "power-on",
    1: "hard reset",
    2: "watchdog",
    3: "deep-sleep wake",
    4: "soft reset",
    5: "brown-out",
    255: "unknown",
}

# --- Limits --------------------------------------------------------------------------------
# A device holds a whole batch in a 64 KB MicroPython heap, so 16 KiB is already generous;
# larger payloads are refused (4.13) before any decoding.
MAX_BATCH_BYTES = 16 * 1024
# The deepest valid message nests 4 levels (batch map > series array > series map > array).
# Deeper input is refused while scanning, before a decoder recurses into it.
MAX_DEPTH = 8
MAX_SERIES_PER_BATCH = 64
MAX_POINTS_PER_SERIES = 4096
# Codec blocks can pack many readings into few bytes; this caps the rows one batch makes.
MAX_READINGS_PER_BATCH = 16384
MAX_BLOCK_BYTES = MAX_BATCH_BYTES
MAX_REASON_BYTES = 240  # error-body reason, UTF-8 bytes
MAX_ENVELOPE_BYTES = MAX_BATCH_BYTES + 256  # a batch plus the gateway's few fields

# Ranges of the integer fields.
UINT32_MAX = 2**32 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Values are stored as Float64; an integer beyond 2^53 would not survive that exactly.
MAX_EXACT_INT_VALUE = 2**53
