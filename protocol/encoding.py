"""Deterministic CBOR (RFC 8949 §4.2.1) for the few fixed shapes the gateway writes on
every batch: its answers and the envelope. Written out by hand because these are on the
gateway's per-request path, where `cbor2.dumps(..., canonical=True)` of a small map costs
several times more than building the bytes; tests/protocol/test_replies.py checks every
shape against cbor2's canonical encoding."""

from __future__ import annotations

MAP, TEXT, BYTES = 5, 3, 2


def head(major: int, n: int) -> bytes:
    """The initial byte(s) of a data item of `major` type with argument `n` (0 <= n < 2^64),
    in the shortest form."""
    m = major << 5
    if n < 24:
        return bytes((m | n,))
    if n < 0x100:
        return bytes((m | 24, n))
    if n < 0x10000:
        return bytes((m | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((m | 26,)) + n.to_bytes(4, "big")
    return bytes((m | 27,)) + n.to_bytes(8, "big")


def integer(v: int) -> bytes:
    """A CBOR integer, -2^64 <= v < 2^64 (OverflowError beyond)."""
    return head(0, v) if v >= 0 else head(1, -1 - v)


def text(s: str) -> bytes:
    encoded = s.encode()
    return head(TEXT, len(encoded)) + encoded
