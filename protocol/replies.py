"""What the gateway answers: the bodies of 2.04 (telemetry-ack) and 4.xx/5.xx (error-body).

All are encoded deterministically (RFC 8949 §4.2.1: shortest integers, keys in order), so
the same answer is the same bytes, and a device's parser reads them in one pass. The two
acknowledgements, one per request, are built by hand (protocol/encoding.py).
"""

from __future__ import annotations

import cbor2

from protocol.constants import (
    ACK_BOOT,
    ACK_GATEWAY_TIME,
    ACK_HIGH_SEQ,
    ERROR_CODE,
    ERROR_GATEWAY_TIME,
    ERROR_REASON,
    HEALTH_ACK_GATEWAY_TIME,
    KEY_VERSION,
    MAX_REASON_BYTES,
    SCHEMA_VERSION,
)
from protocol.encoding import MAP, head, integer
from protocol.errors import ProtocolError

_ACK_HEAD = head(MAP, 4) + integer(KEY_VERSION) + integer(SCHEMA_VERSION) + integer(ACK_BOOT)
_ACK_HIGH_SEQ = integer(ACK_HIGH_SEQ)
_ACK_GATEWAY_TIME = integer(ACK_GATEWAY_TIME)
_HEALTH_ACK_HEAD = (
    head(MAP, 2) + integer(KEY_VERSION) + integer(SCHEMA_VERSION) + integer(HEALTH_ACK_GATEWAY_TIME)
)


def encode_ack(boot: int, high_seq: int, gateway_time_us: int) -> bytes:
    """The 2.04 body: every reading of `boot` up to `high_seq` is durable."""
    return b"".join(
        (
            _ACK_HEAD,
            integer(boot),
            _ACK_HIGH_SEQ,
            integer(high_seq),
            _ACK_GATEWAY_TIME,
            integer(gateway_time_us),
        )
    )


def encode_health_ack(gateway_time_us: int) -> bytes:
    """The 2.04 body of `POST /h`: only the gateway's clock."""
    return _HEALTH_ACK_HEAD + integer(gateway_time_us)


def encode_error(error: ProtocolError | tuple[int, str], gateway_time_us: int) -> bytes:
    """The body of a refusal; the reason is cut to fit `MAX_REASON_BYTES` of UTF-8."""
    code, reason = (error.code, error.detail) if isinstance(error, ProtocolError) else error
    encoded = reason.encode()
    if len(encoded) > MAX_REASON_BYTES:
        reason = encoded[: MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."
    return cbor2.dumps(
        {
            KEY_VERSION: SCHEMA_VERSION,
            ERROR_CODE: code,
            ERROR_REASON: reason,
            ERROR_GATEWAY_TIME: gateway_time_us,
        },
        canonical=True,
    )
