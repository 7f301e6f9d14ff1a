"""Writes protocol/vectors/: the wire contract's test vectors, as files.

    python -m protocol.make_vectors      # rewrite protocol/vectors/ from the table below

Each vector is a `.cbor` file with a `.diag` twin (CBOR diagnostic notation, RFC 8949 §8 with
the encoding indicators of RFC 8610 Appendix G) and an entry in `vectors.json` giving its
expected outcome. The files are what the firmware's tests (MicroPython) and the gateway's
tests read; this table is only how they are made, and a test checks that the files on disk
are exactly what it makes. Needs the dev extra (cbor-diag).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import cbor2

import native
from protocol.cbor_scan import CborRejected, scan

VECTORS = Path(__file__).parent / "vectors"
INT64_MAX = 2**63 - 1


def _batch(**fields: Any) -> dict[int, Any]:
    """A valid one-series batch; keyword arguments override fields (None deletes one)."""
    keys = {"v": 0, "device": 1, "boot": 2, "seq": 3, "t0": 4, "clock": 5, "series": 6}
    base: dict[str, Any] = {
        "v": 1,
        "device": "sht31-kitchen",
        "boot": 7,
        "seq": 1000,
        "t0": 5_000_000,
        "series": [{0: "temperature", 1: [0, 1_000_000, 2_000_000], 2: [21.5, 21.75, 22.0]}],
    }
    base.update(fields)
    return {keys[k]: v for k, v in base.items() if v is not None}


def _plain(metric: str, ts: list[int], values: list[Any]) -> dict[int, Any]:
    return {0: metric, 1: ts, 2: values}


def _block(ts: list[int], values: list[float]) -> bytes:
    return native.encode(ts, values)


def _packed(metric: str, ts: list[int], values: list[float]) -> dict[int, Any]:
    return {0: metric, 3: _block(ts, values), 4: len(ts)}


def _steady(n: int, period_us: int = 1_000_000) -> list[int]:
    return [i * period_us for i in range(n)]


def _health(**fields: Any) -> dict[int, Any]:
    names = [
        "v",
        "device",
        "boot",
        "uptime",
        "reset",
        "heap_free",
        "ring",
        "overflow",
        "retransmits",
        "sampled",
        "quarantined",
        "firmware",
        "device_time",
    ]
    base: dict[str, Any] = {
        "v": 1,
        "device": "sht31-kitchen",
        "boot": 7,
        "uptime": 3600,
        "reset": 0,
        "heap_free": 41_000,
        "ring": [8192, 65536],
        "overflow": 0,
        "retransmits": 3,
        "sampled": [0, 3599],
    }
    base.update(fields)  # None stays: `sampled` is null before the first sample
    return {names.index(k): v for k, v in base.items()}


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _at_size(size: int) -> dict[int, Any]:
    """A valid batch of exactly `size` encoded bytes: Float64 points fill it to within a
    point's width, a longer device id makes up the rest."""
    for n in range(min(4096, size // 10 + 1), 0, -1):  # a point is 10 bytes: 0 and 0.1_3
        for id_len in range(24, 65):
            obj = _batch(device="d" * id_len, series=[_plain("pad", [0] * n, [0.1] * n)])
            if len(cbor2.dumps(obj, canonical=True)) == size:
                return obj
    raise ValueError(f"cannot build a batch of {size} bytes")


def _valid() -> list[tuple[str, str, Any, str]]:
    """(name, message, object, why). Encoded deterministically: shortest integers and floats
    (RFC 8949 §4.2), keys ascending, so any conforming encoder reproduces the bytes."""
    three = [0, 1_000_000, 2_000_000]
    return [
        (
            "minimal",
            "telemetry-batch",
            _batch(series=[_plain("t", [0], [0])]),
            "the smallest batch: one reading",
        ),
        (
            "temperature-decimals",
            "telemetry-batch",
            _batch(
                series=[
                    _plain(
                        "temperature",
                        list(range(0, 8_000_000, 1_000_000)),
                        [21.37, 21.38, 21.41, 21.4, 21.39, 21.37, 21.36, 21.35],
                    )
                ]
            ),
            "decimal readings need Float64",
        ),
        (
            "status-codes",
            "telemetry-batch",
            _batch(series=[_plain("status", three, [0, 3, 255])]),
            "integer values",
        ),
        (
            "mixed-int-float",
            "telemetry-batch",
            _batch(series=[_plain("level", three, [1, 1.5, -2])]),
            "ints and floats in one array",
        ),
        (
            "with-clock",
            "telemetry-batch",
            _batch(clock=[1_764_000_000_000_000, 2_500]),
            "clock estimate after synchronisation",
        ),
        (
            "negative-clock-offset",
            "telemetry-batch",
            _batch(clock=[-123_456, 0]),
            "offsets may be negative; uncertainty 0",
        ),
        ("negative-t0", "telemetry-batch", _batch(t0=-5_000_000), "the device clock is any int64"),
        (
            "two-series",
            "telemetry-batch",
            _batch(
                series=[
                    _plain("temperature", three, [21.5, 21.75, 22.0]),
                    _plain("humidity", three, [40.5, 41, 41.5]),
                ]
            ),
            "two metrics; readings numbered series by series",
        ),
        (
            "sixty-four-series",
            "telemetry-batch",
            _batch(series=[_plain(f"m{i}", [0], [i]) for i in range(64)]),
            "the most series",
        ),
        (
            "special-floats",
            "telemetry-batch",
            _batch(
                series=[
                    _plain(
                        "raw",
                        [0, 1, 2, 3, 4, 5],
                        [math.nan, math.inf, -math.inf, -0.0, 5e-324, 2.2250738585072014e-308],
                    )
                ]
            ),
            "NaN, infinities, negative zero and subnormals are readings too",
        ),
        (
            "half-floats",
            "telemetry-batch",
            _batch(series=[_plain("ratio", [0, 1, 2], [0.5, 65504.0, 5.960464477539063e-08])]),
            "values exact in half precision encode in 3 bytes",
        ),
        (
            "single-floats",
            "telemetry-batch",
            _batch(series=[_plain("pressure", [0, 1], [_f32(1013.25), _f32(3.14159)])]),
            "values exact in single precision, as a 32-bit-float device sends them",
        ),
        (
            "repeated-timestamps",
            "telemetry-batch",
            _batch(series=[_plain("burst", [5, 5, 5], [1, 2, 3])]),
            "equal offsets are allowed; only decreasing ones are not",
        ),
        (
            "last-seq-at-limit",
            "telemetry-batch",
            _batch(seq=INT64_MAX - 2),
            "the last reading's sequence number is 2^63 - 1",
        ),
        ("boot-at-limit", "telemetry-batch", _batch(boot=2**32 - 1), "boot counter 2^32 - 1"),
        (
            "exact-int-limits",
            "telemetry-batch",
            _batch(series=[_plain("counter", [0, 1], [2**53, -(2**53)])]),
            "the largest integers Float64 holds exactly",
        ),
        (
            "longest-names",
            "telemetry-batch",
            _batch(
                device="A" + "b_c-d" * 12 + "efg",
                series=[_plain("m" + "x_9" * 10 + "z", [0], [1])],
            ),
            "a 64-character device id and a 32-character metric name",
        ),
        (
            "most-points",
            "telemetry-batch",
            _batch(series=[_plain("samples", [0] * 4096, [0] * 4096)]),
            "4096 points, the most in one series",
        ),
        (
            "t0-at-limit",
            "telemetry-batch",
            _batch(t0=INT64_MAX - 10, series=[_plain("t", [0, 10], [1, 2])]),
            "t0 + offset reaches 2^63 - 1",
        ),
        (
            "exactly-max-size",
            "telemetry-batch",
            _at_size(16384),
            "a batch of exactly 16384 bytes, the size limit",
        ),
        (
            "codec-block",
            "telemetry-batch",
            _batch(
                series=[
                    _packed(
                        "temperature", _steady(256), [21.37 + (i % 7) / 100 for i in range(256)]
                    )
                ]
            ),
            "256 readings in one native codec block, as a device sends them",
        ),
        (
            "block-and-plain",
            "telemetry-batch",
            _batch(
                series=[
                    _packed(
                        "vibration", _steady(64, 1000), [(i * 37 % 101) * 0.001 for i in range(64)]
                    ),
                    _plain("battery", [0], [3.7]),
                ]
            ),
            "a codec block and a plain series in one batch",
        ),
        (
            "most-readings",
            "telemetry-batch",
            _batch(series=[_packed(f"status{i}", _steady(4096), [0.0] * 4096) for i in range(4)]),
            "16384 readings in four blocks: the most one batch may create",
        ),
        (
            "health-minimal",
            "health-report",
            _health(sampled=None),
            "a health report before the first sample",
        ),
        (
            "health-full",
            "health-report",
            _health(reset=2, quarantined=12, firmware="0.1.0", device_time=3_600_000_000),
            "every optional field",
        ),
    ]


_B = cbor2.dumps(_batch(), canonical=True)  # a valid batch, to cut and splice


def _invalid() -> list[tuple[str, str, Any, str, str, str]]:
    """(name, message, object or raw bytes, expected code, error text, why)."""
    deep = b"\x81" * 100_000 + b"\x00"
    head = bytes.fromhex("a6000101")  # {0: 1, 1: ...} of a six-key batch
    raw_batch_with = lambda device_bytes: head + device_bytes + _B[len(head) + 14 :]  # noqa: E731
    return [
        # --- 4.13: refused before decoding
        (
            "oversize",
            "telemetry-batch",
            _at_size(16385),
            "4.13",
            "limit 16384",
            "one byte over the size limit",
        ),
        # --- 4.00: not CBOR we accept
        ("empty", "telemetry-batch", b"", "4.00", "empty payload", "no bytes"),
        ("truncated", "telemetry-batch", _B[:-3], "4.00", "truncated", "cut three bytes short"),
        (
            "trailing-bytes",
            "telemetry-batch",
            _B + b"\x00",
            "4.00",
            "trailing bytes",
            "a second item after the batch",
        ),
        (
            "indefinite-never-closed",
            "telemetry-batch",
            b"\x9f" + b"\x01" * 10,
            "4.00",
            "indefinite-length",
            "an indefinite array with no break",
        ),
        (
            "indefinite-map",
            "telemetry-batch",
            b"\xbf" + _B[1:] + b"\xff",
            "4.00",
            "indefinite-length",
            "the batch as an indefinite map: well-formed, not accepted",
        ),
        (
            "nesting-100000",
            "telemetry-batch",
            deep,
            "4.13",
            "limit 16384",
            "100,000 nested arrays: refused by size before a byte is parsed",
        ),
        (
            "nesting-16000",
            "telemetry-batch",
            b"\x81" * 16_000 + b"\x00",
            "4.00",
            "nesting deeper",
            "16,000 nested arrays within the size limit: refused by the scan",
        ),
        (
            "nesting-9",
            "telemetry-batch",
            b"\x81" * 9 + b"\x00",
            "4.00",
            "nesting deeper",
            "one level deeper than the scan accepts",
        ),
        (
            "nesting-8",
            "telemetry-batch",
            b"\x81" * 8 + b"\x00",
            "4.22",
            "must be a CBOR map",
            "as deep as the scan accepts: well-formed, but not a batch",
        ),
        (
            "text-length-2-63",
            "telemetry-batch",
            head[:3] + b"\x7b\x7f\xff\xff\xff\xff\xff\xff\xff" + b"abc",
            "4.00",
            "truncated: string",
            "a text string declaring 2^63 bytes",
        ),
        (
            "array-count-2-63",
            "telemetry-batch",
            b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff\x00",
            "4.00",
            "elements declared",
            "an array declaring 2^63 elements",
        ),
        (
            "map-count-2-63",
            "telemetry-batch",
            b"\xbb\x7f\xff\xff\xff\xff\xff\xff\xff\x00\x01",
            "4.00",
            "elements declared",
            "a map declaring 2^63 pairs",
        ),
        (
            "bytes-length-2-32",
            "telemetry-batch",
            b"\x5b\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00" * 16,
            "4.00",
            "truncated: string",
            "a byte string declaring 4 GiB",
        ),
        (
            "invalid-utf8",
            "telemetry-batch",
            raw_batch_with(b"\x6d" + b"sht31-kitch\xc3\x28"),
            "4.00",
            "invalid UTF-8",
            "the device id is not UTF-8",
        ),
        (
            "duplicate-key",
            "telemetry-batch",
            b"\xa7" + _B[1:] + b"\x02\x08",
            "4.00",
            "duplicate map key",
            "boot given twice: which one would the gateway store?",
        ),
        (
            "non-shortest-int",
            "telemetry-batch",
            b"\xa6\x18\x00" + _B[2:],
            "4.00",
            "shortest form",
            "key 0 written in two bytes",
        ),
        (
            "reserved-info",
            "telemetry-batch",
            b"\x1c",
            "4.00",
            "reserved additional information",
            "additional information 28 is reserved",
        ),
        (
            "stray-break",
            "telemetry-batch",
            b"\xff",
            "4.00",
            "break code",
            "a break with nothing to close",
        ),
        (
            "two-byte-simple-below-32",
            "telemetry-batch",
            b"\xf8\x10",
            "4.00",
            "two-byte simple value",
            "not well-formed (RFC 8949 §3.3)",
        ),
        # --- 4.22: well-formed CBOR that is not a valid batch
        (
            "not-a-map",
            "telemetry-batch",
            [1, 2, 3],
            "4.22",
            "must be a CBOR map",
            "an array at the top",
        ),
        (
            "version-2",
            "telemetry-batch",
            _batch(v=2),
            "4.22",
            "schema version 2",
            "a schema this gateway does not speak",
        ),
        (
            "version-missing",
            "telemetry-batch",
            _batch(v=None),
            "4.22",
            "schema version None",
            "no schema version",
        ),
        (
            "unknown-key",
            "telemetry-batch",
            {**_batch(), 7: 0},
            "4.22",
            "unknown key 7",
            "batch maps are closed",
        ),
        (
            "missing-series",
            "telemetry-batch",
            _batch(series=None),
            "4.22",
            "missing series",
            "no readings at all",
        ),
        (
            "device-empty",
            "telemetry-batch",
            _batch(device=""),
            "4.22",
            "does not match",
            "empty device id",
        ),
        (
            "device-space",
            "telemetry-batch",
            _batch(device="kitchen sensor"),
            "4.22",
            "does not match",
            "spaces are not allowed in a device id",
        ),
        (
            "device-dot",
            "telemetry-batch",
            _batch(device="kitchen.sensor"),
            "4.22",
            "does not match",
            "a dot would split the device's NATS subject token",
        ),
        (
            "device-colon",
            "telemetry-batch",
            _batch(device="kitchen:1"),
            "4.22",
            "does not match",
            "a colon would make the idempotency key ambiguous",
        ),
        (
            "device-newline",
            "telemetry-batch",
            _batch(device="kitchen\n"),
            "4.22",
            "does not match",
            "a trailing newline is not part of a device id",
        ),
        (
            "device-65-chars",
            "telemetry-batch",
            _batch(device="d" * 65),
            "4.22",
            "does not match",
            "one character over the device id limit",
        ),
        (
            "boot-2-32",
            "telemetry-batch",
            _batch(boot=2**32),
            "4.22",
            "unsigned integer",
            "boot counter beyond 32 bits",
        ),
        (
            "seq-negative",
            "telemetry-batch",
            _batch(seq=-1),
            "4.22",
            "unsigned integer",
            "sequence numbers are unsigned",
        ),
        (
            "t0-float",
            "telemetry-batch",
            _batch(t0=5.0),
            "4.22",
            "64-bit signed integer",
            "times are integer microseconds",
        ),
        (
            "series-empty",
            "telemetry-batch",
            _batch(series=[]),
            "4.22",
            "array of 1 to 64",
            "a batch with no series",
        ),
        (
            "sixty-five-series",
            "telemetry-batch",
            _batch(series=[_plain(f"m{i}", [0], [i]) for i in range(65)]),
            "4.22",
            "array of 1 to 64",
            "one series over the limit",
        ),
        (
            "plain-and-block",
            "telemetry-batch",
            _batch(series=[{0: "x", 1: [0], 2: [1], 3: b"\x00", 4: 1}]),
            "4.22",
            "either ts and values",
            "a series in both forms",
        ),
        (
            "ts-decreasing",
            "telemetry-batch",
            _batch(series=[_plain("x", [0, 5, 3], [1, 2, 3])]),
            "4.22",
            "decreasing",
            "device time runs backwards within a series",
        ),
        (
            "ts-negative",
            "telemetry-batch",
            _batch(series=[_plain("x", [-1, 0], [1, 2])]),
            "4.22",
            "not an unsigned integer",
            "an offset before t0",
        ),
        (
            "length-mismatch",
            "telemetry-batch",
            _batch(series=[_plain("x", [0, 1, 2], [1, 2])]),
            "4.22",
            "2 values for 3 timestamps",
            "ts and values differ in length",
        ),
        (
            "value-text",
            "telemetry-batch",
            _batch(series=[_plain("x", [0], ["21.5"])]),
            "4.22",
            "expected a number",
            "a reading as text",
        ),
        (
            "value-null",
            "telemetry-batch",
            _batch(series=[_plain("x", [0], [None])]),
            "4.22",
            "expected a number",
            "null is not a reading",
        ),
        (
            "value-bool",
            "telemetry-batch",
            _batch(series=[_plain("x", [0], [True])]),
            "4.22",
            "expected a number",
            "true is not a reading",
        ),
        (
            "value-undefined",
            "telemetry-batch",
            raw_splice_value(b"\xf7"),
            "4.22",
            "expected a number",
            "undefined is not a reading",
        ),
        (
            "value-int-2-53-plus-1",
            "telemetry-batch",
            _batch(series=[_plain("x", [0], [2**53 + 1])]),
            "4.22",
            "not exact as a Float64",
            "an integer Float64 storage would round",
        ),
        (
            "value-tag",
            "telemetry-batch",
            raw_splice_value(b"\xc1\x01"),
            "4.22",
            "tags are not part",
            "a tagged value (epoch time)",
        ),
        (
            "value-simple-64",
            "telemetry-batch",
            raw_splice_value(b"\xf8\x40"),
            "4.22",
            "simple value 64",
            "an unassigned simple value",
        ),
        (
            "duplicate-metric",
            "telemetry-batch",
            _batch(series=[_plain("x", [0], [1]), _plain("x", [1], [2])]),
            "4.22",
            "more than one series",
            "readings of one metric split across series",
        ),
        (
            "metric-uppercase",
            "telemetry-batch",
            _batch(series=[_plain("Temperature", [0], [1])]),
            "4.22",
            "does not match",
            "metric names are lowercase",
        ),
        (
            "clock-negative-uncertainty",
            "telemetry-batch",
            _batch(clock=[0, -1]),
            "4.22",
            "unsigned integer",
            "uncertainty cannot be negative",
        ),
        (
            "clock-not-pair",
            "telemetry-batch",
            _batch(clock=[0]),
            "4.22",
            "[offset-us, uncertainty-us]",
            "clock estimate needs two numbers",
        ),
        (
            "t0-plus-offset-overflow",
            "telemetry-batch",
            _batch(t0=INT64_MAX, series=[_plain("t", [0, 1], [1, 2])]),
            "4.22",
            "runs past 2^63 - 1",
            "the last reading's time does not fit in 64 bits",
        ),
        (
            "seq-overflow",
            "telemetry-batch",
            _batch(seq=INT64_MAX - 1),
            "4.22",
            "run past 2^63 - 1",
            "three readings from 2^63 - 2 overflow the sequence",
        ),
        (
            "block-empty",
            "telemetry-batch",
            _batch(series=[{0: "x", 3: b"", 4: 1}]),
            "4.22",
            "byte string of 1 to",
            "a codec block with no bytes",
        ),
        (
            "block-corrupt",
            "telemetry-batch",
            _batch(series=[{0: "x", 3: b"\x09" + _block([0, 1], [1.0, 2.0])[1:], 4: 2}]),
            "4.22",
            "block does not decode",
            "a block of an unknown format version",
        ),
        (
            "block-count-mismatch",
            "telemetry-batch",
            _batch(series=[{0: "x", 3: _block(_steady(5), [1.0] * 5), 4: 3}]),
            "4.22",
            "block holds 5 points, count says 3",
            "count and block disagree",
        ),
        (
            "block-ts-decreasing",
            "telemetry-batch",
            _batch(series=[_packed("x", [0, 10, 5], [1.0, 2.0, 3.0])]),
            "4.22",
            "decreasing",
            "device time runs backwards inside a block",
        ),
        (
            "block-ts-negative",
            "telemetry-batch",
            _batch(series=[_packed("x", [-5, 0], [1.0, 2.0])]),
            "4.22",
            "not an unsigned integer",
            "a block offset before t0",
        ),
        (
            "too-many-readings",
            "telemetry-batch",
            _batch(series=[_packed(f"status{i}", _steady(4096), [0.0] * 4096) for i in range(5)]),
            "4.13",
            "20480 readings in one batch, limit 16384",
            "five full blocks: more rows than one batch may create",
        ),
        (
            "block-count-zero",
            "telemetry-batch",
            _batch(series=[{0: "x", 3: b"\x00", 4: 0}]),
            "4.22",
            "at least one point",
            "a codec block of zero points",
        ),
        (
            "health-unknown-reset",
            "health-report",
            _health(reset=9),
            "4.22",
            "unknown boot reason",
            "boot reasons are an enumeration",
        ),
        (
            "health-ring-overfull",
            "health-report",
            _health(ring=[10, 5]),
            "4.22",
            "exceeds its capacity",
            "a ring cannot hold more than its capacity",
        ),
        (
            "health-sampled-backwards",
            "health-report",
            _health(sampled=[10, 5]),
            "4.22",
            "is before first",
            "the sampled range runs backwards",
        ),
    ]


def raw_splice_value(item: bytes) -> bytes:
    """The default batch with its first value replaced by raw `item` bytes."""
    first = cbor2.dumps(21.5, canonical=True)
    at = _B.index(b"\x83" + first) + 1
    return _B[:at] + item + _B[at + len(first) :]


def _diag(data: bytes) -> tuple[str, str]:
    """(diag text, form): proper diagnostic notation where the bytes are well-formed and
    shallow, else an annotated hex dump (diagnostic notation cannot spell ill-formed CBOR)."""
    import cbor_diag

    if not _deeper_than(data, 64):  # cbor_diag recurses; keep it off hostile nesting
        try:
            text = cbor_diag.cbor2diag(data)
            if cbor_diag.diag2cbor(text) == data:
                return text + "\n", "edn"
        except ValueError:
            pass
    lines = [data[i : i + 32].hex() for i in range(0, len(data), 32)] or [""]
    body = "\n  ".join(lines)
    return (
        "/ not expressible as diagnostic notation (ill-formed or too deep):\n"
        "  the bytes of the .cbor file follow as a byte string /\n"
        f"h'{body}'\n",
        "hex",
    )


def _deeper_than(data: bytes, depth: int) -> bool:
    try:
        scan(data, depth)
    except CborRejected as e:
        return e.reason.startswith("nesting deeper")
    return False


def build() -> dict[str, bytes]:
    """Every file of protocol/vectors/ as {relative path: contents}."""
    out: dict[str, bytes] = {}
    entries = []

    def add(kind: str, name: str, message: str, data: bytes, entry: dict[str, Any]) -> None:
        text, form = _diag(data)
        out[f"{kind}/{name}.cbor"] = data
        out[f"{kind}/{name}.diag"] = text.encode()
        entries.append(
            {"name": name, "file": f"{kind}/{name}.cbor", "message": message, "diag": form, **entry}
        )

    for name, message, obj, why in _valid():
        data = cbor2.dumps(obj, canonical=True)
        entry: dict[str, Any] = {"expect": "2.04", "why": why}
        if message == "telemetry-batch":
            readings = sum(len(s.get(1, ())) or s.get(4, 0) for s in obj[6])
            entry.update(
                device=obj[1],
                boot=obj[2],
                seq=obj[3],
                readings=readings,
                last_seq=obj[3] + readings - 1,
            )
        add("valid", name, message, data, entry)
    for name, message, obj, expect, error, why in _invalid():
        data = obj if isinstance(obj, bytes) else cbor2.dumps(obj, canonical=True)
        add("invalid", name, message, data, {"expect": expect, "error": error, "why": why})
    out["vectors.json"] = (json.dumps(entries, indent=1, ensure_ascii=False) + "\n").encode()
    return out


def main() -> int:
    files = build()
    for old in VECTORS.glob("*/*.*"):
        if f"{old.parent.name}/{old.name}" not in files:
            old.unlink()
    for rel, data in files.items():
        path = VECTORS / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(files)} files to {VECTORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
