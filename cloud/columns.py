"""JetStream message bodies → validated batches → columns for one insert. No I/O here.

A message either decodes completely into rows or is poison (`Poison` with the reason): a bad
envelope, a batch that fails `protocol.parse_batch` (which also decodes and checks codec
blocks), or times that ClickHouse's DateTime64(6) cannot hold. Poison never reaches an
insert, so bad input changes no stored state.

Times (µs since the Unix epoch, UTC) of the k-th point of a series with offset `ts[k]`:
- `device_ts` = t0 + ts[k], the device's own clock, always kept;
- `ts` = device_ts + clock.offset_us when the batch carries a clock estimate
  (`time_source` = 'device_clock');
- otherwise the batch is anchored on the gateway's receive time: its latest point is placed
  at `received` and the others keep their distance to it (`time_source` =
  'gateway_receive'). The receive time is in the envelope, so the anchor is the same on
  every redelivery of the message and the row stays a pure function of the message.
Sequence numbers: the k-th reading of the batch, counting series in order and points in
order within a series, has seq = batch.seq + k (protocol/telemetry.cddl).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa

from protocol import Batch, Envelope, HealthReport, ProtocolError, parse_batch, parse_envelope
from protocol.constants import INT64_MAX

T = TypeVar("T", Batch, HealthReport)  # the payloads a device sends

# ClickHouse DateTime64(6) spans 1900-01-01 00:00:00 to 2299-12-31 23:59:59.999999 UTC.
MIN_WALL_US = -2_208_988_800_000_000
MAX_WALL_US = 10_413_791_999_999_999

TIME_SOURCE_DEVICE = "device_clock"
TIME_SOURCE_GATEWAY = "gateway_receive"

READINGS_COLUMNS = [
    "device",
    "metric",
    "ts",
    "value",
    "boot",
    "seq",
    "batch_seq",
    "device_ts",
    "time_source",
]
BATCHES_COLUMNS = [
    "device",
    "boot",
    "seq",
    "readings",
    "gateway",
    "spool_id",
    "received",
    "inserted",
    "msg_id",
    "stream",
    "stream_seq",
    "deliveries",
    "time_source",
]

_TS = pa.timestamp("us", tz="UTC")


class Poison(ValueError):
    """A message that can never become rows; `str()` is the reason for the dead letter."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """One good message: its envelope, batch, and per-series (offsets, values) arrays."""

    envelope: Envelope
    batch: Batch
    points: tuple[tuple[str, np.ndarray, np.ndarray], ...]
    shift_us: int  # wall time = device time + shift_us
    time_source: str


def open_message(
    body: bytes, parse: Callable[[bytes], T], what: str, subject_device: str | None
) -> tuple[Envelope, T]:
    """The envelope and its payload parsed by `parse` (a batch or a health report, named
    `what`), from the device the subject names; raises `Poison` with the reason."""
    try:
        env = parse_envelope(body)
    except ProtocolError as e:
        raise Poison(f"bad envelope: {e}") from None
    try:
        payload = parse(env.payload)
    except ProtocolError as e:
        raise Poison(f"bad {what}: {e}") from None
    device = payload.device
    if subject_device is not None and subject_device != device:
        noun = what.split()[-1]
        raise Poison(f"subject names device {subject_device!r}, {noun} is from {device!r}")
    return env, payload


def decode(body: bytes, subject_device: str | None = None) -> Decoded:
    """Validate one message body; raises `Poison` with the reason."""
    env, batch = open_message(body, parse_batch, "batch", subject_device)
    points = []
    lo, hi = INT64_MAX, -1
    for s in batch.series:
        # parse_batch decoded and checked codec blocks: both forms arrive as (ts, values).
        offsets = np.asarray(s.ts, dtype=np.int64)
        values = np.asarray(s.values, dtype=np.float64)
        if len(offsets):
            lo, hi = min(lo, int(offsets.min())), max(hi, int(offsets.max()))
        points.append((s.metric, offsets, values))
    if batch.t0 + hi > INT64_MAX:
        raise Poison("t0 + time offset runs past 2^63 - 1 µs")
    if batch.clock is not None:
        shift, source = batch.clock.offset_us, TIME_SOURCE_DEVICE
    else:
        shift, source = env.received_us - (batch.t0 + hi), TIME_SOURCE_GATEWAY
    first, last = batch.t0 + lo + shift, batch.t0 + hi + shift
    if first < MIN_WALL_US or last > MAX_WALL_US:
        raise Poison(f"wall times {first}..{last} µs fall outside 1900..2299")
    return Decoded(env, batch, tuple(points), shift, source)


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where one message sat in the stream."""

    msg_id: str
    stream: str
    stream_seq: int
    deliveries: int


def readings_table(decoded: list[Decoded]) -> pa.RecordBatch:
    """All readings of these messages as one Arrow record batch (one insert block).

    Per series only its two arrays are touched; every per-series constant (device, metric,
    boot, batch seq, time shift, first seq) is expanded once for the whole fetch with
    np.repeat, which keeps small batches cheap."""
    devices: dict[str, int] = {}
    metrics: dict[str, int] = {}
    offsets: list[np.ndarray] = []
    values: list[np.ndarray] = []
    lengths, dev_i, met_i, t0s, shifts, boots, bseqs, first_seqs, srcs = ([] for _ in range(9))
    for d in decoded:
        b = d.batch
        di = devices.setdefault(b.device, len(devices))
        src = 1 if d.time_source == TIME_SOURCE_DEVICE else 2
        k = 0
        for metric, off, vals in d.points:
            n = len(off)
            offsets.append(off)
            values.append(vals)
            lengths.append(n)
            dev_i.append(di)
            met_i.append(metrics.setdefault(metric, len(metrics)))
            t0s.append(b.t0)
            shifts.append(d.shift_us)
            boots.append(b.boot)
            bseqs.append(b.seq)
            first_seqs.append(b.seq + k)
            srcs.append(src)
            k += n

    n_rows = np.asarray(lengths, dtype=np.int64)

    def per_row(scalars: list[int], dtype: type) -> np.ndarray:
        return np.repeat(np.asarray(scalars, dtype=dtype), n_rows)

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)

    # no overflow below: decode() checked t0 + max offset and the wall range per batch
    device_ts = cat(offsets, np.int64) + per_row(t0s, np.int64)
    wall = device_ts + per_row(shifts, np.int64)
    # seq of row r = first seq of its series + (r - first row of its series)
    starts = np.concatenate(([0], np.cumsum(n_rows)[:-1])) if lengths else n_rows
    seq = per_row(first_seqs, np.uint64) + (
        np.arange(int(n_rows.sum()), dtype=np.uint64) - per_row(starts.tolist(), np.uint64)
    )
    return pa.RecordBatch.from_arrays(
        [
            pa.DictionaryArray.from_arrays(per_row(dev_i, np.int32), pa.array(list(devices))),
            pa.DictionaryArray.from_arrays(per_row(met_i, np.int32), pa.array(list(metrics))),
            pa.array(wall, _TS),
            pa.array(cat(values, np.float64), pa.float64()),
            pa.array(per_row(boots, np.uint32), pa.uint32()),
            pa.array(seq, pa.uint64()),
            pa.array(per_row(bseqs, np.uint64), pa.uint64()),
            pa.array(device_ts, pa.int64()),
            pa.array(per_row(srcs, np.int8), pa.int8()),
        ],
        names=READINGS_COLUMNS,
    )


def batches_table(
    decoded: list[Decoded], lineage: list[Lineage], inserted_us: int
) -> pa.RecordBatch:
    """One lineage row per message."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array([d.batch.device for d in decoded], pa.string()),
            pa.array([d.batch.boot for d in decoded], pa.uint32()),
            pa.array([d.batch.seq for d in decoded], pa.uint64()),
            pa.array([d.batch.readings for d in decoded], pa.uint32()),
            pa.array([d.envelope.gateway for d in decoded], pa.string()),
            pa.array([d.envelope.spool_id for d in decoded], pa.uint64()),
            pa.array([d.envelope.received_us for d in decoded], _TS),
            pa.array([inserted_us] * len(decoded), _TS),
            pa.array([x.msg_id for x in lineage], pa.string()),
            pa.array([x.stream for x in lineage], pa.string()),
            pa.array([x.stream_seq for x in lineage], pa.uint64()),
            pa.array([x.deliveries for x in lineage], pa.uint32()),
            pa.array([1 if d.time_source == TIME_SOURCE_DEVICE else 2 for d in decoded], pa.int8()),
        ],
        names=BATCHES_COLUMNS,
    )


def ipc_stream(batch: pa.RecordBatch) -> bytes:
    """An Arrow IPC stream of one record batch: what both engines read as one insert block."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue()
