"""API latency against the same SQL run directly on chDB, in one run and one process.

    just bench api
    RINGTAIL_BENCH_DAYS=7 RINGTAIL_BENCH_DEVICES=1000 just bench api   # smaller, faster

Data (not timed): one device with a month of 1 Hz readings (2.6 M rows, inserted in
4096-reading batches through the readings DDL, so the rollup views fill as the writer
fills them), and 10,000 devices with six readings each in the last hour.

Timed, each as p50/p99 over repeated runs:
- a one-day range at a 1-minute step (answered from `readings_1m`, 1440 buckets);
- the latest value of every (device, metric) over the last day (10,000 rows, one page).
"API" is a real HTTP request (keep-alive, http.client) to uvicorn serving the app in a
thread of this process; "direct" is the SQL the API sent for that request (recorded), run
on the same chDB session. Their ratio is the API's overhead: issue 8 targets ≤ 1.5x.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cloud.api import ApiSettings, create_app
from cloud.columns import READINGS_COLUMNS, ipc_stream
from cloud.config import MAX_INSERT_BLOCK_ROWS
from cloud.migrate import migrate
from cloud.store import ChdbStore, Store

DAYS = int(os.environ.get("RINGTAIL_BENCH_DAYS", "30"))
DEVICES = int(os.environ.get("RINGTAIL_BENCH_DEVICES", "10000"))
RUNS = int(os.environ.get("RINGTAIL_BENCH_RUNS", "60"))
BATCH = 4096  # readings per device batch: one batch_seq, as a device would send
TOKEN = "bench-token-0123456789abcdefghij"
_TS = pa.timestamp("us", tz="UTC")


class Recording:
    """The store with the last SELECT it ran remembered: the SQL the API sent."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self.last = ""

    def query(self, sql: str) -> list[list[Any]]:
        self.last = sql
        return self.store.query(sql)

    def command(self, sql: str) -> None:
        self.store.command(sql)

    def insert_arrow(self, *a: Any) -> int:
        return self.store.insert_arrow(*a)

    def close(self) -> None:
        self.store.close()


def _insert(store: Store, device: list[str], ts: np.ndarray, value: np.ndarray) -> None:
    """Rows for one metric; seq counts per device, batch_seq = first seq of its 4096-batch.
    Inserted in chunks of whole batches below max_insert_block_size (cloud/schema.py)."""
    names = sorted(set(device))
    index = {d: i for i, d in enumerate(names)}
    dev_i = np.fromiter((index[d] for d in device), np.int32, len(device))
    # seq per device: rank of the row within its device (rows arrive grouped by device)
    starts = np.r_[0, np.flatnonzero(np.diff(dev_i)) + 1]
    counts = np.diff(np.r_[starts, len(dev_i)])
    seq = (np.arange(len(dev_i)) - np.repeat(starts, counts)).astype(np.uint64)
    batch_seq = seq - seq % BATCH
    chunk = (MAX_INSERT_BLOCK_ROWS // 2 // BATCH) * BATCH
    for lo in range(0, len(dev_i), chunk):
        sl = slice(lo, lo + chunk)
        n = len(dev_i[sl])
        rb = pa.RecordBatch.from_arrays(
            [
                pa.DictionaryArray.from_arrays(dev_i[sl], pa.array(names)),
                pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array(["temperature"])),
                pa.array(ts[sl], _TS),
                pa.array(value[sl], pa.float64()),
                pa.array(np.ones(n, np.uint32), pa.uint32()),
                pa.array(seq[sl], pa.uint64()),
                pa.array(batch_seq[sl], pa.uint64()),
                pa.array(ts[sl], pa.int64()),
                pa.array(np.ones(n, np.int8), pa.int8()),
            ],
            names=READINGS_COLUMNS,
        )
        store.insert_arrow(
            "readings",
            READINGS_COLUMNS,
            ipc_stream(rb),
            {"max_insert_block_size": MAX_INSERT_BLOCK_ROWS},
        )


def _fill(store: Store, now_s: int) -> tuple[int, int]:
    """The data; returns the one-day range (start, end) in seconds, on the minute."""
    rng = np.random.default_rng(1)
    end_s = now_s - now_s % 86400  # today 00:00 UTC
    n = DAYS * 86400
    ts = (end_s - n + np.arange(n, dtype=np.int64)) * 1_000_000
    value = np.round(20 + np.cumsum(rng.normal(0, 0.05, n)), 3)
    _insert(store, ["bench-month"] * n, ts, value)
    per = 6
    fleet = [f"dev-{i:05d}" for i in range(DEVICES) for _ in range(per)]
    fts = np.tile((now_s - 3600 + np.arange(per) * 600) * 1_000_000, DEVICES).astype(np.int64)
    _insert(store, fleet, fts, rng.uniform(-40, 60, len(fleet)).round(3))
    store.command("OPTIMIZE TABLE readings FINAL")  # merged, as a month-old table would be
    store.command("OPTIMIZE TABLE rollup_1m FINAL")
    return end_s - 86400, end_s


def _pct(xs: list[float]) -> tuple[float, float]:
    a = np.array(xs) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _serve(app: Any) -> tuple[Any, int]:
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return server, port


def _compare(name: str, conn: http.client.HTTPConnection, url: str, rec: Recording) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    conn.request("GET", url, headers=headers)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError(f"{url}: {r.status} {body[:300]!r}")
    sql = rec.last
    api, direct = [], []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        conn.request("GET", url, headers=headers)
        resp = conn.getresponse()
        resp.read()
        api.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rows = rec.store.query(sql)
        direct.append(time.perf_counter() - t0)
    (a50, a99), (d50, d99) = _pct(api), _pct(direct)
    print(
        f"| {name} | {len(rows)} | {d50:.1f} / {d99:.1f} | {a50:.1f} / {a99:.1f} | "
        f"{a50 / d50:.2f}x | {len(body) / 1024:.0f} KiB |",
        flush=True,
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        store = ChdbStore(Path(tmp) / "ch")
        try:
            migrate(store)
            t0 = time.perf_counter()
            start_s, end_s = _fill(store, int(time.time()))
            print(
                f"data: 1 device x {DAYS} days at 1 Hz + {DEVICES} devices x 6 readings, "
                f"filled in {time.perf_counter() - t0:.1f} s; {RUNS} runs each"
            )
            rec = Recording(store)
            app = create_app(ApiSettings(max_page=max(10_000, DEVICES)), rec, {TOKEN: "bench"})
            server, port = _serve(app)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            iso = lambda s: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))  # noqa: E731
            print(
                "| query | rows | direct p50 / p99 ms | API p50 / p99 ms | API/direct p50 | body |"
            )
            print("|---|---|---|---|---|---|")
            _compare(
                "one day, 1-minute step (readings_1m)",
                conn,
                f"/devices/bench-month/readings?metric=temperature&start={iso(start_s)}"
                f"&end={iso(end_s)}&step=60",
                rec,
            )
            _compare(
                "one day, 5-minute step off the minute (raw aggregate)",
                conn,
                f"/devices/bench-month/readings?metric=temperature&start={iso(start_s + 1)}"
                f"&end={iso(end_s + 1)}&step=300",
                rec,
            )
            _compare(
                f"latest values, {DEVICES} devices",
                conn,
                f"/readings/latest?limit={DEVICES}",
                rec,
            )
            conn.close()
            server.should_exit = True
            time.sleep(0.5)
        finally:
            store.close()


if __name__ == "__main__":
    main()
