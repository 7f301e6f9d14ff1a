"""The first, shared steps of reading any message: size, bounded scan, decode, shape checks.

Every check runs before the next, cheaper one first: the size limit before scanning, the
scan (`cbor_scan`) before cbor2 builds any object, so no input can make the decoder recurse
deeply, allocate by a declared length, or run for longer than one pass over its bytes.
"""

from __future__ import annotations

from typing import Any

import cbor2

from protocol.cbor_scan import CborRejected, scan
from protocol.constants import (
    BAD_REQUEST,
    INT64_MAX,
    INT64_MIN,
    KEY_VERSION,
    MAX_DEPTH,
    REQUEST_ENTITY_TOO_LARGE,
    SCHEMA_VERSION,
    UNPROCESSABLE_ENTITY,
)
from protocol.errors import ProtocolError


def decode_message(payload: bytes | bytearray | memoryview, max_bytes: int) -> dict[int, Any]:
    """Bytes -> the message's top-level map, with its schema version checked."""
    size = memoryview(payload).nbytes
    if size > max_bytes:
        raise ProtocolError(REQUEST_ENTITY_TOO_LARGE, f"payload is {size} bytes, limit {max_bytes}")
    try:
        scan(payload, MAX_DEPTH)
    except CborRejected as e:
        raise ProtocolError(
            UNPROCESSABLE_ENTITY if e.schema_error else BAD_REQUEST, str(e)
        ) from None
    try:
        message = cbor2.loads(bytes(payload))
    except (cbor2.CBORDecodeError, ValueError) as e:  # the scan should have caught these
        raise ProtocolError(BAD_REQUEST, f"CBOR decode failed: {e}") from None
    if not isinstance(message, dict):
        raise ProtocolError(UNPROCESSABLE_ENTITY, "message must be a CBOR map")
    version = message.get(KEY_VERSION)
    if version != SCHEMA_VERSION or type(version) is not int:
        raise ProtocolError(
            UNPROCESSABLE_ENTITY,
            f"schema version {version!r} is not supported (this gateway speaks {SCHEMA_VERSION})",
            "v",
        )
    return message


def fail(reason: str, path: str = "") -> ProtocolError:
    return ProtocolError(UNPROCESSABLE_ENTITY, reason, path)


def check_map(obj: Any, path: str, names: dict[int, str], required: frozenset[int]) -> dict:
    """A closed map with integer keys: every key known, every required key present."""
    if not isinstance(obj, dict):
        raise fail(f"expected a map, got {type(obj).__name__}", path)
    for key in obj:
        if type(key) is not int or key not in names:
            raise fail(f"unknown key {key!r}", path)
    missing = required - obj.keys()
    if missing:
        raise fail(f"missing {', '.join(names[k] for k in sorted(missing))}", path)
    return obj


def check_uint(value: Any, path: str, maximum: int) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise fail(f"expected an unsigned integer up to {maximum}, got {value!r}", path)
    return value


def check_int64(value: Any, path: str) -> int:
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise fail(f"expected a 64-bit signed integer, got {value!r}", path)
    return value


def check_text(value: Any, path: str, pattern) -> str:
    if type(value) is not str or pattern.fullmatch(value) is None:
        raise fail(f"{value!r} does not match {pattern.pattern}", path)
    return value
