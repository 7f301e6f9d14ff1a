"""A bounded scan of CBOR (RFC 8949) bytes, run before anything decodes them.

`scan(data)` walks item headers without building objects, so hostile input costs at most
one pass over its own bytes and a stack of at most `max_depth` frames. It accepts only the
CBOR this protocol speaks and refuses, with a `CborRejected` naming the offset:

- anything not well-formed (RFC 8949 §3, Appendix F): truncation, reserved additional
  information, a stray break, a declared length or count longer than the bytes left
  (a length of 2^63 is refused by arithmetic, never allocated), trailing bytes;
- anything not valid (§5.3): invalid UTF-8 in a text string, duplicate map keys;
- what the protocol never sends: indefinite lengths, integer or length arguments not in
  their shortest form (§4.2.1; this is what makes duplicate-key detection byte-exact),
  nesting deeper than `max_depth`;
- tags and simple values other than false/true/null/undefined, which the schema does not
  use (`schema_error` is set on these so the caller can answer 4.22 rather than 4.00).

`scan` runs the C twin of this walk (`native.cbor_scan`, native/cbor_scan.c) when the
native extension is importable (40-60x faster on bench_protocol's batches); `scan_python` is the
reference it must match: the same decision, reason text and offset for every input
(tests/protocol/test_cbor_scan_native.py checks that differentially). Without native, or
with RINGTAIL_CBOR_SCAN=python in the environment at import, `scan` is `scan_python`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

_MAJOR_UINT, _MAJOR_NINT, _MAJOR_BSTR, _MAJOR_TSTR = 0, 1, 2, 3
_MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG, _MAJOR_SIMPLE = 4, 5, 6, 7
_ARG_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}
# The smallest argument that needs each width; anything smaller must use a shorter form.
_ARG_MIN = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}


def _scalar_sizes() -> bytes:
    """Per initial byte: the whole item's size when it is a scalar whose size and validity
    the byte alone decides (small ints, false/true/null/undefined, floats), else 0.
    Arrays of such scalars, which is what batches are mostly made of, are skipped with
    one table look-up per item."""
    sizes = bytearray(256)
    for initial in range(256):
        major, info = initial >> 5, initial & 0x1F
        if major in (_MAJOR_UINT, _MAJOR_NINT) and info < 24:
            sizes[initial] = 1
        elif major in (_MAJOR_UINT, _MAJOR_NINT) and info in _ARG_BYTES:
            sizes[initial] = 1 + _ARG_BYTES[info]  # valid only in shortest form: checked
        elif major == _MAJOR_SIMPLE and 20 <= info <= 23:
            sizes[initial] = 1
        elif major == _MAJOR_SIMPLE and info in (25, 26, 27):
            sizes[initial] = 1 + _ARG_BYTES[info]
    return bytes(sizes)


_SCALAR_SIZE = _scalar_sizes()
# For integers with a following argument: the least argument allowed, by initial byte.
_INT_ARG_MIN = {(major << 5) | info: least for major in (0, 1) for info, least in _ARG_MIN.items()}


class CborRejected(ValueError):
    """The bytes are not CBOR this protocol accepts."""

    def __init__(self, reason: str, offset: int, *, schema_error: bool = False) -> None:
        super().__init__(f"{reason} at byte {offset}")
        self.reason = reason
        self.offset = offset
        self.schema_error = schema_error


def scan_python(data: bytes | bytearray | memoryview, max_depth: int) -> None:
    """Raise `CborRejected` unless `data` is exactly one acceptable CBOR item (the reference
    implementation, in Python)."""
    buf = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    end = len(buf)
    if end == 0:
        raise CborRejected("empty payload", 0)
    pos = 0
    # One frame per open container: [items left, is_map, index in map, key start, keys seen].
    # A map of n pairs counts 2n items; even indices are keys.
    stack: list[list] = []

    def complete_item(item_end: int) -> None:
        # An item (with everything nested in it) ended at item_end. Count it in its
        # container; a container that thereby closes is in turn an item of its parent.
        # A key's span runs from the start recorded in its map's frame to item_end, which
        # covers container keys too.
        while stack:
            frame = stack[-1]
            if frame[1] and frame[2] % 2 == 0:
                key = bytes(buf[frame[3] : item_end])
                if key in frame[4]:
                    raise CborRejected("duplicate map key", frame[3])
                frame[4].add(key)
            frame[0] -= 1
            frame[2] += 1
            if frame[0]:
                return
            stack.pop()

    scalar_size, int_arg_min = _SCALAR_SIZE, _INT_ARG_MIN
    while True:
        if stack and not stack[-1][1]:
            # Inside an array: skip a run of fixed-size scalars without the general path.
            frame = stack[-1]
            left = frame[0]
            while left > 1 and pos < end:
                initial = buf[pos]
                size = scalar_size[initial]
                if not size or pos + size > end:
                    break  # not a fixed-size scalar, or cut short: the general path names it
                if size > 1 and initial < 0x40:
                    least = int_arg_min[initial]
                    if int.from_bytes(buf[pos + 1 : pos + size], "big") < least:
                        break  # the general path names the error
                pos += size
                left -= 1
            frame[2] += frame[0] - left
            frame[0] = left
        if pos >= end:
            raise CborRejected("truncated: an item is missing", pos)
        start = pos
        if stack and stack[-1][1] and stack[-1][2] % 2 == 0:
            stack[-1][3] = start
        initial = buf[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            arg = info
        elif info in _ARG_BYTES:
            width = _ARG_BYTES[info]
            if pos + width > end:
                raise CborRejected("truncated: argument runs past the end", start)
            arg = int.from_bytes(buf[pos : pos + width], "big")
            pos += width
            if major != _MAJOR_SIMPLE and arg < _ARG_MIN[info]:
                raise CborRejected("argument not in its shortest form", start)
        elif info == 31:
            if major == _MAJOR_SIMPLE:
                raise CborRejected("break code outside an indefinite-length item", start)
            if major in (_MAJOR_UINT, _MAJOR_NINT, _MAJOR_TAG):
                raise CborRejected("not well-formed: additional information 31", start)
            raise CborRejected("indefinite-length items are not accepted", start)
        else:
            raise CborRejected(f"not well-formed: reserved additional information {info}", start)

        if major in (_MAJOR_BSTR, _MAJOR_TSTR):
            if arg > end - pos:
                raise CborRejected(f"truncated: string of {arg} bytes declared", start)
            if major == _MAJOR_TSTR:
                try:
                    bytes(buf[pos : pos + arg]).decode("utf-8")
                except UnicodeDecodeError as e:
                    raise CborRejected("invalid UTF-8 in text string", pos + e.start) from None
            pos += arg
        elif major in (_MAJOR_ARRAY, _MAJOR_MAP):
            items = arg * 2 if major == _MAJOR_MAP else arg
            if items > end - pos:
                raise CborRejected(f"truncated: {arg} elements declared", start)
            if items:
                if len(stack) >= max_depth:
                    raise CborRejected(f"nesting deeper than {max_depth} levels", start)
                stack.append([items, major == _MAJOR_MAP, 0, pos, set()])
                continue
        elif major == _MAJOR_TAG:
            raise CborRejected("tags are not part of the schema", start, schema_error=True)
        elif major == _MAJOR_SIMPLE:
            if info == 24:
                if arg < 32:
                    raise CborRejected("not well-formed: two-byte simple value below 32", start)
                raise CborRejected(
                    f"simple value {arg} is not part of the schema", start, schema_error=True
                )
            if info < 20:
                raise CborRejected(
                    f"simple value {info} is not part of the schema", start, schema_error=True
                )
        complete_item(pos)
        if not stack:
            break
    if pos != end:
        raise CborRejected(f"{end - pos} trailing bytes after the item", pos)


def _native_scan() -> Callable[[Any, int], Any] | None:
    if os.environ.get("RINGTAIL_CBOR_SCAN", "").lower() == "python":
        return None
    try:
        from native import cbor_scan
    except ImportError:  # not built (or no numpy/cffi): the Python scan serves
        return None
    return cbor_scan


_c_scan = _native_scan()
#: True when `scan` runs the C scan.
NATIVE = _c_scan is not None


def _scan_native(data: bytes | bytearray | memoryview, max_depth: int) -> None:
    """Raise `CborRejected` unless `data` is exactly one acceptable CBOR item."""
    try:
        refused = _c_scan(data, max_depth)  # type: ignore[misc]
    except (TypeError, MemoryError):  # a strided view, or C could not allocate
        scan_python(data, max_depth)
        return
    if refused is not None:
        reason, offset, schema_error = refused
        raise CborRejected(reason, offset, schema_error=schema_error)


scan = _scan_native if NATIVE else scan_python
