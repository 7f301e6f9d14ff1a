"""Writer throughput, TELEMETRY → chDB, against a raw bulk insert of the same rows into chDB
measured in the same run (the ceiling).

    just bench cloud
    RINGTAIL_BENCH_READINGS=8000000 just bench cloud
    RINGTAIL_BENCH_POINTS=32 RINGTAIL_BENCH_READINGS=200000 just bench cloud   # small batches

The stream is filled first (not timed) with device batches as the gateway publishes them:
two metrics per batch, each a native codec block of 2048 points. Timed: the writer in this
process, from its first fetch to the last ack (fetch, validate, decode, build columns,
insert readings + views + lineage, ack). The ceiling: the same rows, already in Arrow
columns, inserted in one statement into a table with the readings DDL and no views.
Reported: readings/s of each, their ratio (issue 7 targets ≥ 0.25), and the resident memory
of the process running the writer (the ceiling runs in a child process) when the writer
starts and at its peak; run with more readings to see that the peak does not grow with them.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import random
import tempfile
import time
from pathlib import Path

import cbor2
import nats
import numpy as np
import pyarrow as pa

import native
from cloud.columns import READINGS_COLUMNS, decode, ipc_stream, readings_table
from cloud.config import ClickhouseSection, NatsSection, WriterConfig
from cloud.schema import MIGRATIONS
from cloud.store import ChdbStore
from cloud.writer import Writer
from protocol import encode_envelope
from tests.cloud.helpers import ensure_streams
from tests.gateway.harness import NatsServer

READINGS = int(os.environ.get("RINGTAIL_BENCH_READINGS", "2000000"))
POINTS = int(os.environ.get("RINGTAIL_BENCH_POINTS", "2048"))  # per series, 2 series a batch
DEVICES = 20
FETCH = NatsSection().fetch_messages  # the default
CHUNK = 500_000  # the writer's default max_rows_per_insert


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _bodies(rng: random.Random) -> list[tuple[str, str, bytes]]:
    now_us = int(time.time()) * 1_000_000
    out = []
    messages = max(1, READINGS // (2 * POINTS))
    seqs = [0] * DEVICES
    for i in range(messages):
        d = i % DEVICES
        device = f"bench-{d:03d}"
        t0 = i * POINTS * 1_000_000
        ts = [k * 1_000_000 + rng.randrange(200) for k in range(POINTS)]
        base = 20.0 + d
        series = []
        for metric in ("temperature", "humidity"):
            values, v = [], base
            for _ in range(POINTS):
                v = round(v + rng.gauss(0, 0.05), 2)
                values.append(v)
            series.append({0: metric, 3: native.encode(ts, values), 4: POINTS})
        offset = now_us - 86_400_000_000 - t0 + i * 1_000_000
        payload = cbor2.dumps(
            {0: 1, 1: device, 2: 1, 3: seqs[d], 4: t0, 5: [offset, 500], 6: series},
            canonical=True,
        )
        out.append(
            (
                f"tlm.bench.{device}",
                f"{device}:1:{seqs[d]}",
                encode_envelope("bench", now_us, i, payload),
            )
        )
        seqs[d] += 2 * POINTS
    return out


async def _fill(url: str, bodies: list[tuple[str, str, bytes]]) -> None:
    await ensure_streams(url)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for i in range(0, len(bodies), 256):
            acks = [js.publish(s, b, headers={"Nats-Msg-Id": m}) for s, m, b in bodies[i : i + 256]]
            await asyncio.gather(*acks)
    finally:
        await nc.close()


async def _drain(config: WriterConfig, messages: int) -> tuple[float, int, float]:
    """(seconds from first fetch to last ack, readings written, peak RSS MB meanwhile)."""
    writer = Writer(config)
    task = asyncio.create_task(writer.run())
    while writer.counters.fetches == 0:
        if task.done():
            task.result()
        await asyncio.sleep(0.001)
    start = time.perf_counter()
    peak = _rss_mb()
    while writer.counters.messages + writer.counters.dead_letters < messages:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
        peak = max(peak, _rss_mb())
    elapsed = time.perf_counter() - start
    writer.stop()
    await task
    return elapsed, writer.counters.readings, peak


def _ceiling(path: Path, bodies: list[tuple[str, str, bytes]]) -> float:
    """Seconds to insert the same rows, columns ready, into a table with the readings DDL and
    no views: the best of one statement, or statements of CHUNK rows (as the writer does)."""
    rows = readings_table([decode(b) for _, _, b in bodies])
    store = ChdbStore(path)
    try:
        best = float("inf")
        for i, chunk in enumerate((rows.num_rows, CHUNK)):
            table = f"ceiling_{i}"
            store.command(MIGRATIONS[0].statements[0].replace("readings", table, 1))
            parts = [ipc_stream(rows.slice(o, chunk)) for o in range(0, rows.num_rows, chunk)]
            t = time.perf_counter()
            for data in parts:
                store.insert_arrow(table, READINGS_COLUMNS, data, {})
            best = min(best, time.perf_counter() - t)
        return best
    finally:
        store.close()


VALUE_CODECS = ("ZSTD(1)", "Gorilla, ZSTD(1)", "FPC, ZSTD(1)", "ALP", "ALP, ZSTD(1)")
TS_CODECS = ("ZSTD(1)", "Delta, ZSTD(1)", "DoubleDelta, ZSTD(1)", "T64, ZSTD(1)")


def _codec_sizes(path: Path) -> list[tuple[str, str, int, int]]:
    """Compressed bytes of real series under each candidate codec: the hourly measured
    weather in pvlib's TMY3 files (as bench_native uses) and this benchmark's 1 s sensor
    random walks, stored as `readings` stores them (sorted by device, metric, ts)."""
    from bench.bench_native import pvlib_series

    rng = random.Random(3)
    series = dict(pvlib_series())
    for i in range(4):
        ts = np.arange(20_000, dtype=np.int64) * 1_000_000 + [
            rng.randrange(200) for _ in range(20_000)
        ]
        v = np.round(20 + i + np.cumsum([rng.gauss(0, 0.05) for _ in range(20_000)]), 2)
        series[f"walk {i}"] = (np.sort(ts) + 1_750_000_000_000_000, v)
    names, tss, vals = [], [], []
    for name, (ts, v) in series.items():
        names += [name] * len(ts)
        tss.append(ts)
        vals.append(v)
    rows = pa.table(
        {
            "metric": names,
            "ts": pa.array(np.concatenate(tss), pa.timestamp("us", tz="UTC")),
            "value": np.concatenate(vals),
        }
    )
    store = ChdbStore(path)
    out = []
    try:
        store.command("SET enable_alp_codec = 1")
        for column, codecs in (("value", VALUE_CODECS), ("ts", TS_CODECS)):
            for i, codec in enumerate(codecs):
                table = f"codec_{column}_{i}"
                store.command(
                    f"CREATE TABLE {table} (metric LowCardinality(String), "
                    f"ts DateTime64(6, 'UTC') {'CODEC(' + codec + ')' if column == 'ts' else ''}, "
                    f"value Float64 {'CODEC(' + codec + ')' if column == 'value' else ''}) "
                    "ENGINE = MergeTree ORDER BY (metric, ts) SETTINGS min_bytes_for_wide_part = 0"
                )
                store.insert_arrow(table, ["metric", "ts", "value"], _ipc(rows), {})
                store.command(f"OPTIMIZE TABLE {table} FINAL")
                ((size, raw),) = store.query(
                    "SELECT sum(data_compressed_bytes), sum(data_uncompressed_bytes) "
                    f"FROM system.columns WHERE table = '{table}' AND name = '{column}'"
                )
                out.append((column, codec, int(size), int(raw)))
    finally:
        store.close()
    return out


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def main() -> None:
    rng = random.Random(1)
    bodies = _bodies(rng)
    total = len(bodies) * 2 * POINTS
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        # the ceiling first, in its own chDB directory, so its merges do not overlap the writer
        # and in a child process, so this process's memory is the writer's alone
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            ceiling_s = pool.apply(_ceiling, (Path(tmp) / "ceiling", bodies))
            codecs = pool.apply(_codec_sizes, (Path(tmp) / "codecs",))
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            asyncio.run(_fill(server.url, bodies))
            config = WriterConfig(
                nats=NatsSection(url=server.url, fetch_messages=FETCH, fetch_timeout_s=0.2),
                clickhouse=ClickhouseSection(chdb_path=Path(tmp) / "ch"),
            )
            rss0 = _rss_mb()
            elapsed, written, peak = asyncio.run(_drain(config, len(bodies)))
        finally:
            server.stop()
        if written != total:
            raise RuntimeError(f"writer wrote {written} readings of {total}")
        store = ChdbStore(Path(tmp) / "ch")
        try:
            stored = store.query("SELECT count() FROM readings FINAL")[0][0]
        finally:
            store.close()
    if stored != total:
        raise RuntimeError(f"readings holds {stored} rows, published {total}")
    w_rate, c_rate = total / elapsed, total / ceiling_s
    print(f"{len(bodies)} messages, {total:,} readings ({2 * POINTS} per message, codec blocks)")
    print(f"{'path':<34}{'seconds':>9}{'readings/s':>14}")
    print(f"{'writer: stream → chDB':<34}{elapsed:>9.2f}{w_rate:>14,.0f}")
    print(f"{'ceiling: bulk insert into chDB':<34}{ceiling_s:>9.2f}{c_rate:>14,.0f}")
    print(f"ratio writer/ceiling: {w_rate / c_rate:.2f} (target ≥ 0.25)")
    print(f"memory (RSS): {rss0:.0f} MB when the writer started, {peak:.0f} MB peak while it ran")
    print("\ncodecs on measured series (pvlib TMY3 hourly weather + 1 s sensor walks):")
    print(f"{'column':<8}{'codec':<24}{'bytes':>12}{'ratio':>8}")
    for column, codec, size, raw in codecs:
        print(f"{column:<8}{codec:<24}{size:>12,}{raw / size:>8.1f}")


if __name__ == "__main__":
    main()
