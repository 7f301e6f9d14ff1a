"""Ringtail's C hot paths: CRC-32C, the time-series block codec (native/SPEC.md) and the
bounded CBOR scan of protocol/cbor_scan.py (native/DESIGN.md, CBOR scan).

The only public entry to the C code. Every function validates its arguments here, before C
sees them, and the C functions run with the GIL released (cffi API mode).

    crc32c(data, value=0) -> int
    encode(timestamps, values) -> bytes
    decode(block) -> (timestamps: numpy int64 array, values: numpy float64 array)
    cbor_scan(data, max_depth) -> None or (reason, offset, schema_error)

Buffers (bytes, bytearray, memoryview, array.array, numpy arrays) are read in place, without
a copy, when they are C-contiguous with the right item type; other sequences are converted.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Any

import numpy as np

from native._native import ffi, lib

__all__ = [
    "CRC32C_BACKEND",
    "FORMAT_VERSION",
    "MAX_POINTS",
    "CodecError",
    "cbor_scan",
    "crc32c",
    "decode",
    "encode",
]

FORMAT_VERSION: int = lib.RT_FORMAT_VERSION
MAX_POINTS: int = lib.RT_MAX_POINTS
#: "sse4.2+vpclmulqdq", "sse4.2+pclmul", "sse4.2", "armv8-crc" or "portable": the best path
#: this CPU has, or the one forced in the environment at import by
#: RINGTAIL_CRC32C_PATH=portable|sse42|pclmul|vpclmul (the best available at or below it) or
#: RINGTAIL_CRC32C_PORTABLE=1 (see native/DESIGN.md, CRC-32C).
CRC32C_BACKEND: str = ffi.string(lib.rt_crc32c_backend()).decode()
# The names native/crc32c.c knows; it treats any other as "auto" (the best path).
_CRC_PATH_NAMES = ("auto", "portable", "hw", "sse42", "sse4.2", "armv8-crc", "pclmul", "vpclmul")
if (os.environ.get("RINGTAIL_CRC32C_PATH") or "auto") not in (*_CRC_PATH_NAMES, "fold"):
    warnings.warn(
        f"RINGTAIL_CRC32C_PATH={os.environ['RINGTAIL_CRC32C_PATH']!r} is none of "
        f"{', '.join(_CRC_PATH_NAMES)}: using the best path, {CRC32C_BACKEND}",
        RuntimeWarning,
        stacklevel=2,
    )

_crc = lib.rt_crc32c
# Output buffers are written before they are read: skip cffi's zero fill.
_alloc = ffi.new_allocator(should_clear_after_alloc=False)


class _Buffers(threading.local):
    """Per-thread encoder memory, grown on demand and reused: a fresh multi-megabyte buffer
    per call would cost more in page faults than encoding does. Bounded by MAX_POINTS
    (about 60 MB at the limit, 6 MB for a 100,000-point block)."""

    def __init__(self) -> None:
        self.points = -1
        self.out: Any = None
        self.scratch: Any = None
        self.out_len = ffi.new("size_t *")

    def reserve(self, n: int) -> None:
        if n > self.points:
            self.out = _alloc("uint8_t[]", lib.rt_encode_bound(n))
            self.scratch = _alloc("uint64_t[]", (lib.rt_encode_scratch_bound(n) + 7) // 8)
            self.points = n


_buffers = _Buffers()

_INT64_FORMATS = frozenset({"q", "<q", "=q", "l", "<l", "=l"})
_FLOAT64_FORMATS = frozenset({"d", "<d", "=d"})


class CodecError(ValueError):
    """A block that is corrupt, truncated, of an unknown version, or otherwise unreadable."""


def _bytes_view(data: Any) -> Any:
    """A uint8_t[] over data's memory; a copy only if data is not contiguous."""
    try:
        return ffi.from_buffer("uint8_t[]", data)
    except TypeError as exc:
        raise TypeError(f"expected a bytes-like object, got {type(data).__name__}") from exc
    except (ValueError, BufferError):  # a strided view: copy it into one contiguous block
        return ffi.from_buffer("uint8_t[]", memoryview(data).tobytes())


def crc32c(data: Any, value: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`, extending `value` (a previous result) if given."""
    # bytes go to C as they are (cffi passes their buffer); the common case stays one call.
    try:
        if type(data) is bytes:
            return _crc(value, data, len(data))
        buf = _bytes_view(data)
        return _crc(value, buf, len(buf))
    except OverflowError as exc:  # cffi's check of the uint32_t argument
        raise ValueError("value must be a CRC-32C result: 0 <= value < 2**32") from exc


# _crc32c_impl's names: (C function, its availability check or None).
_CRC_PATHS: dict[str, tuple[Any, Any]] = {
    "portable": (lib.rt_crc32c_portable, None),
    "hw": (lib.rt_crc32c_hw, lib.rt_crc32c_hw_available),
    "pclmul": (lib.rt_crc32c_pclmul, lib.rt_crc32c_pclmul_available),
    "fold": (lib.rt_crc32c_fold, lib.rt_crc32c_fold_available),
}
_CRC_PATHS["sse42"] = _CRC_PATHS["hw"]
_CRC_PATHS["vpclmul"] = _CRC_PATHS["fold"]


def _crc32c_impl(name: str) -> Any:
    """The CRC function of one path, for tests and benchmarks: "portable", "hw" or "sse42"
    (crc32 instructions, three streams), "pclmul" (128-bit carry-less folding beside crc32
    streams, 64 bytes and up) or "fold" or "vpclmul" (AVX-512 folding, 256 bytes and up);
    shorter inputs go to "hw". LookupError if this CPU lacks the path."""
    fn, available = _CRC_PATHS.get(name, (None, None))
    if fn is None or (available is not None and not available()):
        raise LookupError(f"no CRC-32C backend {name!r} on this machine")

    def impl(data: Any, value: int = 0) -> int:
        if type(data) is bytes:
            return fn(value, data, len(data))
        buf = _bytes_view(data)
        return fn(value, buf, len(buf))

    return impl


def _typed(obj: Any, formats: frozenset[str], dtype: Any, kinds: str, name: str) -> Any:
    """(cdata pointer, length) over obj's memory if it already is a contiguous 1-D buffer of
    the C type; otherwise over a converted copy, refusing conversions that lose information
    (floats as timestamps, uint64 beyond int64)."""
    try:
        mv = memoryview(obj)
    except TypeError:
        mv = None
    ctype = "int64_t[]" if dtype is np.int64 else "double[]"
    if mv is not None and mv.ndim == 1 and mv.c_contiguous and mv.format in formats:
        return ffi.from_buffer(ctype, mv), mv.nbytes // mv.itemsize
    if isinstance(obj, str | bytes | bytearray):
        raise TypeError(f"{name} must be numbers, not {type(obj).__name__}")
    try:
        arr = np.asarray(obj)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if arr.size == 0:
        arr = np.empty(0, dtype=dtype)
    if arr.dtype.kind not in kinds:
        raise TypeError(
            f"{name} must be {'integers' if kinds == 'iu' else 'numbers'}, not {arr.dtype}"
        )
    try:
        arr = np.ascontiguousarray(arr.astype(dtype, casting="safe", copy=False))
    except TypeError as exc:
        raise TypeError(
            f"{name}: {arr.dtype} does not convert to {np.dtype(dtype)} safely"
        ) from exc
    return ffi.from_buffer(ctype, arr), arr.shape[0]


def encode(timestamps: Any, values: Any) -> bytes:
    """One block holding the points (timestamps[i], values[i]).

    timestamps: int64 (any unit; Ringtail uses ms since the epoch); values: float64.
    """
    ts, n = _typed(timestamps, _INT64_FORMATS, np.int64, "iu", "timestamps")
    vs, m = _typed(values, _FLOAT64_FORMATS, np.float64, "iuf", "values")
    if n != m:
        raise ValueError(f"{n} timestamps but {m} values")
    if n > MAX_POINTS:
        raise ValueError(f"{n} points: a block holds at most {MAX_POINTS}")
    b = _buffers
    b.reserve(n)
    err = lib.rt_encode(ts, vs, n, b.out, len(b.out), b.scratch, ffi.sizeof(b.scratch), b.out_len)
    if err:
        raise MemoryError(ffi.string(lib.rt_strerror(err)).decode())
    return ffi.buffer(b.out, b.out_len[0])[:]


def decode(block: Any) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps int64[n], values float64[n]) of a block; CodecError if it is unreadable."""
    buf = _bytes_view(block)
    count = ffi.new("size_t *")
    err = lib.rt_block_count(buf, len(buf), count)
    if err:
        raise CodecError(ffi.string(lib.rt_strerror(err)).decode())
    n = count[0]
    ts = np.empty(n, dtype=np.int64)
    vs = np.empty(n, dtype=np.float64)
    err = lib.rt_decode(
        buf, len(buf), ffi.from_buffer("int64_t[]", ts), ffi.from_buffer("double[]", vs), n
    )
    if err:
        raise CodecError(ffi.string(lib.rt_strerror(err)).decode())
    return ts, vs


# rt_cbor_scan's reasons (enum rt_scan_reason): the text protocol/cbor_scan.py gives each,
# formatted with the number C reports, and whether it is a schema error (4.22, not 4.00).
_SCAN_REASONS: dict[int, tuple[str, bool]] = {
    1: ("empty payload", False),
    2: ("truncated: an item is missing", False),
    3: ("truncated: argument runs past the end", False),
    4: ("argument not in its shortest form", False),
    5: ("break code outside an indefinite-length item", False),
    6: ("not well-formed: additional information 31", False),
    7: ("indefinite-length items are not accepted", False),
    8: ("not well-formed: reserved additional information {}", False),
    9: ("truncated: string of {} bytes declared", False),
    10: ("invalid UTF-8 in text string", False),
    11: ("truncated: {} elements declared", False),
    12: ("nesting deeper than {} levels", False),
    13: ("tags are not part of the schema", True),
    14: ("not well-formed: two-byte simple value below 32", False),
    15: ("simple value {} is not part of the schema", True),
    16: ("duplicate map key", False),
    17: ("{} trailing bytes after the item", False),
}
_scan = lib.rt_cbor_scan


class _ScanOut(threading.local):
    def __init__(self) -> None:
        self.out = ffi.new("uint64_t[2]")


_scan_out = _ScanOut()


def cbor_scan(data: Any, max_depth: int) -> tuple[str, int, bool] | None:
    """The bounded CBOR scan of protocol/cbor_scan.py in C (native/cbor_scan.c): None if
    `data` is exactly one CBOR item the protocol accepts, else (reason, byte offset,
    schema_error) exactly as the Python scan's CborRejected would carry them.

    Raises TypeError for objects without a contiguous buffer, MemoryError if C could not
    allocate (only deeply nested or key-heavy inputs allocate)."""
    if type(max_depth) is not int:
        raise TypeError("max_depth must be an int")
    depth = min(max(max_depth, 0), sys.maxsize)  # beyond len, a limit changes nothing
    out = _scan_out.out
    if type(data) is bytes:
        err = _scan(data, len(data), depth, out)
    else:
        try:
            buf = ffi.from_buffer("uint8_t[]", data)
        except (ValueError, BufferError) as exc:  # a strided view: refuse, do not copy
            raise TypeError(f"cbor_scan needs a contiguous buffer: {exc}") from exc
        err = _scan(buf, len(buf), depth, out)
    if not err:
        return None
    if err < 0:
        raise MemoryError(ffi.string(lib.rt_strerror(err)).decode())
    text, schema_error = _SCAN_REASONS[err]
    if err == 12:
        text = text.format(max_depth)
    elif "{}" in text:
        text = text.format(out[1])
    return text, out[0], schema_error
