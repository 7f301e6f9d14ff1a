"""Telemetry batches: the payload of `POST /t`, parsed into a validated `Batch`.

`parse_batch` is what the gateway runs on every request. It enforces the schema of
protocol/telemetry.cddl (the test suite holds it to that file with pycddl on every vector and
on generated batches) and the semantic rules a schema cannot state:
timestamps never negative nor decreasing within a series (codec blocks are decoded to check
theirs, and their point count), arrays of equal length, metric
names unique in a batch, integers that survive Float64 storage, sequence numbers and times
that stay inside 64 bits, and a cap on the readings one batch can create.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import native
from protocol.constants import (
    BATCH_BOOT,
    BATCH_CLOCK,
    BATCH_DEVICE,
    BATCH_SEQ,
    BATCH_SERIES,
    BATCH_T0,
    INT64_MAX,
    KEY_VERSION,
    MAX_BATCH_BYTES,
    MAX_BLOCK_BYTES,
    MAX_EXACT_INT_VALUE,
    MAX_POINTS_PER_SERIES,
    MAX_READINGS_PER_BATCH,
    MAX_SERIES_PER_BATCH,
    REQUEST_ENTITY_TOO_LARGE,
    SERIES_BLOCK,
    SERIES_COUNT,
    SERIES_METRIC,
    SERIES_TS,
    SERIES_VALUES,
    UINT32_MAX,
)
from protocol.decoding import check_int64, check_map, check_text, check_uint, decode_message, fail
from protocol.errors import ProtocolError

DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
METRIC_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")

_BATCH_KEYS = {
    KEY_VERSION: "v",
    BATCH_DEVICE: "device",
    BATCH_BOOT: "boot",
    BATCH_SEQ: "seq",
    BATCH_T0: "t0",
    BATCH_CLOCK: "clock",
    BATCH_SERIES: "series",
}
_BATCH_REQUIRED = frozenset(_BATCH_KEYS) - {BATCH_CLOCK}
_SERIES_KEYS = {
    SERIES_METRIC: "metric",
    SERIES_TS: "ts",
    SERIES_VALUES: "values",
    SERIES_BLOCK: "block",
    SERIES_COUNT: "count",
}
_PLAIN = frozenset({SERIES_METRIC, SERIES_TS, SERIES_VALUES})
_PACKED = frozenset({SERIES_METRIC, SERIES_BLOCK, SERIES_COUNT})


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    """Wall time (µs since the Unix epoch) = device time + `offset_us` ± `uncertainty_us`."""

    offset_us: int
    uncertainty_us: int


@dataclass(frozen=True, slots=True)
class Series:
    """One metric's `count` readings. `ts` (offsets from t0, µs) and `values` hold them in
    either form: the CBOR lists of a plain series, or for a series sent as a native codec
    `block` the numpy arrays decoded from it while validating (so nobody decodes twice)."""

    metric: str
    count: int
    ts: Sequence[int]
    values: Sequence[int | float]
    block: bytes | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    device: str
    boot: int
    seq: int
    t0: int
    clock: ClockEstimate | None
    series: tuple[Series, ...]

    @property
    def readings(self) -> int:
        return sum(s.count for s in self.series)

    @property
    def last_seq(self) -> int:
        """The sequence number of the batch's last reading: what a 2.04 acknowledges."""
        return self.seq + self.readings - 1

    @property
    def msg_id(self) -> str:
        """`device:boot:seq`, the batch's idempotency key (JetStream's Nats-Msg-Id)."""
        return f"{self.device}:{self.boot}:{self.seq}"


def parse_batch(payload: bytes | bytearray | memoryview) -> Batch:
    """Validate one telemetry batch. Raises `ProtocolError` carrying the CoAP code:
    4.13 too large, 4.00 not acceptable CBOR, 4.22 not matching the schema."""
    m = decode_message(payload, MAX_BATCH_BYTES)
    check_map(m, "", _BATCH_KEYS, _BATCH_REQUIRED)
    device = check_text(m[BATCH_DEVICE], "device", DEVICE_ID)
    boot = check_uint(m[BATCH_BOOT], "boot", UINT32_MAX)
    seq = check_uint(m[BATCH_SEQ], "seq", INT64_MAX)
    t0 = check_int64(m[BATCH_T0], "t0")
    clock = _parse_clock(m[BATCH_CLOCK]) if BATCH_CLOCK in m else None

    raw_series = m[BATCH_SERIES]
    if type(raw_series) is not list or not 1 <= len(raw_series) <= MAX_SERIES_PER_BATCH:
        raise fail(f"expected an array of 1 to {MAX_SERIES_PER_BATCH} series", "series")
    series = tuple(_parse_series(s, f"series[{i}]", t0) for i, s in enumerate(raw_series))

    names = [s.metric for s in series]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise fail(f"metric {dup!r} appears in more than one series", "series")
    batch = Batch(device, boot, seq, t0, clock, series)
    if batch.readings > MAX_READINGS_PER_BATCH:
        raise ProtocolError(
            REQUEST_ENTITY_TOO_LARGE,
            f"{batch.readings} readings in one batch, limit {MAX_READINGS_PER_BATCH}",
            "series",
        )
    if batch.last_seq > INT64_MAX:
        raise fail("sequence numbers of this batch run past 2^63 - 1", "seq")
    return batch


def _parse_clock(raw: Any) -> ClockEstimate:
    if type(raw) is not list or len(raw) != 2:
        raise fail("expected [offset-us, uncertainty-us]", "clock")
    return ClockEstimate(check_int64(raw[0], "clock[0]"), check_uint(raw[1], "clock[1]", INT64_MAX))


def _parse_series(raw: Any, path: str, t0: int) -> Series:
    check_map(raw, path, _SERIES_KEYS, frozenset({SERIES_METRIC}))
    metric = check_text(raw[SERIES_METRIC], f"{path}.metric", METRIC_NAME)
    keys = raw.keys()
    if keys == _PACKED:
        block = raw[SERIES_BLOCK]
        if type(block) is not bytes or not 1 <= len(block) <= MAX_BLOCK_BYTES:
            raise fail(f"expected a byte string of 1 to {MAX_BLOCK_BYTES} bytes", f"{path}.block")
        count = check_uint(raw[SERIES_COUNT], f"{path}.count", MAX_POINTS_PER_SERIES)
        if count == 0:
            raise fail("a block holds at least one point", f"{path}.count")
        ts, values = _check_block(block, count, f"{path}.block", t0)
        return Series(metric, count, ts, values, block)
    if keys != _PLAIN:
        raise fail("a series has either ts and values, or block and count", path)
    ts, values = raw[SERIES_TS], raw[SERIES_VALUES]
    _check_ts(ts, f"{path}.ts", t0)
    _check_values(values, f"{path}.values")
    if len(values) != len(ts):
        raise fail(f"{len(values)} values for {len(ts)} timestamps", f"{path}.values")
    return Series(metric, len(ts), ts, values)


def _check_block(block: bytes, count: int, path: str, t0: int) -> tuple[Any, Any]:
    """A block must decode (native/SPEC.md) to `count` points whose time offsets obey the
    same rules as plain ones; a corrupt block is refused here, not carried to the cloud.
    Returns the decoded (offsets, values) arrays."""
    try:
        ts, values = native.decode(block)
    except native.CodecError as e:
        raise fail(f"block does not decode: {e}", path) from None
    if len(ts) != count:
        raise fail(f"block holds {len(ts)} points, count says {count}", path)
    if ts[0] < 0:
        raise fail(f"time offset {int(ts[0])} is not an unsigned integer", path)
    if count > 1 and bool((ts[1:] < ts[:-1]).any()):
        raise fail("time offsets in the block are decreasing", path)
    if t0 + int(ts[-1]) > INT64_MAX:
        raise fail("t0 + time offset runs past 2^63 - 1 µs", path)
    return ts, values


def _check_ts(ts: Any, path: str, t0: int) -> None:
    if type(ts) is not list or not 1 <= len(ts) <= MAX_POINTS_PER_SERIES:
        raise fail(f"expected an array of 1 to {MAX_POINTS_PER_SERIES} offsets", path)
    prev = 0
    for i, x in enumerate(ts):
        if type(x) is not int or x < prev:
            what = "not an unsigned integer" if type(x) is not int or x < 0 else "decreasing"
            raise fail(f"time offset {x!r} is {what}", f"{path}[{i}]")
        prev = x
    if t0 + prev > INT64_MAX:
        raise fail("t0 + time offset runs past 2^63 - 1 µs", f"{path}[{len(ts) - 1}]")


def _check_values(values: Any, path: str) -> None:
    if type(values) is not list or not 1 <= len(values) <= MAX_POINTS_PER_SERIES:
        raise fail(f"expected an array of 1 to {MAX_POINTS_PER_SERIES} values", path)
    limit = MAX_EXACT_INT_VALUE
    for i, v in enumerate(values):
        t = type(v)
        if t is float or (t is int and -limit <= v <= limit):
            continue
        if t is int:
            raise fail(f"integer {v} is not exact as a Float64 (limit ±2^53)", f"{path}[{i}]")
        raise fail(f"expected a number, got {type(v).__name__}", f"{path}[{i}]")
