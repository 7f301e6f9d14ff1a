"""The gateway's envelope around a device payload on JetStream (gateway-envelope in the CDDL).

The device's bytes travel unchanged inside it, so the cloud validates exactly what the
device sent; the envelope adds where and when it arrived, which is the batch's lineage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocol.constants import (
    ENVELOPE_GATEWAY,
    ENVELOPE_PAYLOAD,
    ENVELOPE_RECEIVED,
    ENVELOPE_SPOOL_ID,
    INT64_MAX,
    KEY_VERSION,
    MAX_ENVELOPE_BYTES,
    SCHEMA_VERSION,
)
from protocol.decoding import check_int64, check_map, check_text, check_uint, decode_message, fail
from protocol.encoding import BYTES, MAP, head, integer, text

GATEWAY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

_KEYS = {
    KEY_VERSION: "v",
    ENVELOPE_GATEWAY: "gateway",
    ENVELOPE_RECEIVED: "received",
    ENVELOPE_SPOOL_ID: "spool-id",
    ENVELOPE_PAYLOAD: "payload",
}


@dataclass(frozen=True, slots=True)
class Envelope:
    gateway: str
    received_us: int
    spool_id: int
    payload: bytes


_HEAD = head(MAP, 5) + integer(KEY_VERSION) + integer(SCHEMA_VERSION) + integer(ENVELOPE_GATEWAY)
_RECEIVED = integer(ENVELOPE_RECEIVED)
_SPOOL_ID = integer(ENVELOPE_SPOOL_ID)
_PAYLOAD = integer(ENVELOPE_PAYLOAD)


def encode_envelope(gateway: str, received_us: int, spool_id: int, payload: bytes) -> bytes:
    """Deterministic CBOR (keys in order, shortest forms), built by hand: one per publish."""
    return b"".join(
        (
            _HEAD,
            text(gateway),
            _RECEIVED,
            integer(received_us),
            _SPOOL_ID,
            integer(spool_id),
            _PAYLOAD,
            head(BYTES, len(payload)),
            payload,
        )
    )


def parse_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """Validate an envelope; raises `ProtocolError`. The payload inside is not parsed here:
    the reader runs `parse_batch` or `parse_health` on it according to the subject."""
    m = check_map(decode_message(data, MAX_ENVELOPE_BYTES), "", _KEYS, frozenset(_KEYS))
    payload = m[ENVELOPE_PAYLOAD]
    if type(payload) is not bytes:
        raise fail("expected a byte string", "payload")
    return Envelope(
        gateway=check_text(m[ENVELOPE_GATEWAY], "gateway", GATEWAY_ID),
        received_us=check_int64(m[ENVELOPE_RECEIVED], "received"),
        spool_id=check_uint(m[ENVELOPE_SPOOL_ID], "spool-id", INT64_MAX),
        payload=payload,
    )
