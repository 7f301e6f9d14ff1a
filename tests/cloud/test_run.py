"""`ringtail cloud run`: the writer and the API in one process on one chDB store.

The command runs as a real process against a real nats-server; batches published to
TELEMETRY come back through the API exactly, and survive a SIGTERM and a second start.
The shared store's FIFO lock and per-side time limit are checked on real chDB."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.run import FifoLock, SharedStore
from cloud.store import ChdbStore, StoreError
from tests.cloud import helpers
from tests.cloud.helpers import BASE_US, all_acked, ensure_streams, make_batches, publish
from tests.gateway.harness import free_port, http_get, wait_until

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def us_of(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


class RunProcess:
    """`ringtail cloud run` with its stderr in a file (a pipe nobody drains could fill and
    block the process)."""

    def __init__(self, tmp: Path, nats_url: str, name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        env = {**os.environ, "RINGTAIL_CHDB_PATH": str(tmp / "ch"), "NATS_URL": nats_url}
        env.pop("RINGTAIL_API_TOKENS", None)
        env.pop("CLICKHOUSE_URL", None)
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ringtail.cli", "cloud", "run", "--port", str(self.port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.token = wait_until(self._token, 60, "cloud run to print its token and serve")

    def _token(self) -> str | None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"cloud run exited {self.proc.returncode}: {self.log.read_text()}")
        text = self.log.read_text()
        if "API at " not in text:
            return None
        return text.split("Bearer ", 1)[1].split("\n", 1)[0].strip()

    def get(self, path: str, **params) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def api_rows(run: RunProcess, devices: set[str]) -> set[tuple]:
    """Every raw point of every device's two metrics, paged through the API, as
    (device, metric, ts µs, value, boot, seq)."""
    out: set[tuple] = set()
    for device in devices:
        for metric in ("temperature", "humidity"):
            cursor = None
            while True:
                q = {"metric": metric, "start": iso(BASE_US - 86_400_000_000)}
                q |= {"end": iso(BASE_US + 86_400_000_000), "limit": 100}
                if cursor:
                    q["cursor"] = cursor
                page = run.get(f"/devices/{device}/readings", **q)
                for p in page["points"]:
                    row = (device, metric, us_of(p["ts"]), p["value"], p["boot"], p["seq"])
                    assert row not in out, f"duplicate {row}"
                    out.add(row)
                cursor = page["next"]
                if cursor is None:
                    break
    return out


def expected(batches: list[helpers.TestBatch]) -> set[tuple]:
    return {r[:6] for b in batches for r in b.rows}


def test_cloud_run_writes_and_serves_in_one_process_and_resumes_after_sigterm(
    tmp_path, nats_server
):
    asyncio.run(ensure_streams(nats_server.url))
    batches = make_batches(random.Random(8), devices=3, per_device=4)
    first, second = batches[::2], batches[1::2]
    devices = {b.device for b in batches}

    run = RunProcess(tmp_path, nats_server.url, "first")
    try:
        text = run.log.read_text()
        assert nats_server.url in text and str(tmp_path / "ch") in text
        assert len(run.token) >= 40
        # the token guards the data
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{run.url}/devices", timeout=5)
        assert e.value.code == 401
        e.value.close()  # an HTTPError holds the response's socket
        assert http_get(f"{run.url}/healthz") is not None
        asyncio.run(publish(nats_server.url, first))
        wait_until(lambda: asyncio.run(all_acked(nats_server.url)()), 30, "the writer to ack")
        assert api_rows(run, devices) == expected(first)
    finally:
        rc = run.stop()
    assert rc == 0, run.log.read_text()
    assert "writer stopped" in run.log.read_text()

    # the second start opens the same data and resumes the durable consumer: messages
    # published while no writer ran are written once, next to the first ones
    asyncio.run(publish(nats_server.url, second))
    run = RunProcess(tmp_path, nats_server.url, "second")
    try:
        # read through the API while the writer catches up: both use the one session
        wait_until(lambda: api_rows(run, devices) == expected(batches), 30, "all rows", 0)
        assert asyncio.run(all_acked(nats_server.url)())
    finally:
        rc = run.stop()
    assert rc == 0, run.log.read_text()


def test_cloud_run_exits_2_on_bad_configuration(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[nats]\nurl = "http://x"\n')
    r = subprocess.run(
        [sys.executable, "-m", "ringtail.cli", "cloud", "run", "--config", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "nats.url" in r.stderr


def test_cloud_run_exits_1_when_the_api_cannot_listen(tmp_path, nats_server):
    """The port is taken: the API thread ends, and the writer is stopped with it."""
    env = {**os.environ, "RINGTAIL_CHDB_PATH": str(tmp_path / "ch"), "NATS_URL": nats_server.url}
    env.pop("CLICKHOUSE_URL", None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        r = subprocess.run(
            [sys.executable, "-m", "ringtail.cli", "cloud", "run", "--port", port],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1, r.stderr
    assert "address already in use" in r.stderr and "writer stopped" in r.stderr


def test_fifo_lock_serves_waiters_in_arrival_order():
    lock = FifoLock()
    order: list[int] = []
    lock.__enter__()  # held: every thread below queues behind it
    threads = []
    for i in range(8):
        t = threading.Thread(target=lambda i=i: _take(lock, order, i))
        t.start()
        threads.append(t)
        # each thread has taken its ticket before the next starts
        wait_until(lambda n=i + 1: lock._next_ticket == n + 1, 5, "a ticket")
    lock.__exit__(None, None, None)
    for t in threads:
        t.join(5)
    assert order == list(range(8))


def _take(lock: FifoLock, order: list[int], i: int) -> None:
    with lock:
        order.append(i)


def test_shared_store_limits_api_statements_and_not_the_writer(tmp_path):
    """A long API statement is stopped at its limit, so the writer waits at most that long;
    the writer's statements run unlimited on the same session."""
    shared = SharedStore(ChdbStore(tmp_path / "ch"))
    try:
        api, writer = shared.view(0.3), shared.view(0)
        slow = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 5"
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="TIMEOUT_EXCEEDED"):
            api.query(slow)
        assert time.monotonic() - t0 < 5
        # the writer's view switches the limit off again; a 0.5 s statement completes
        assert writer.query("SELECT sleep(0.5), 1")[0][1] == 1
        assert api.query("SELECT 1") == [[1]]
        api.close()  # a view's close leaves the shared session open
        assert writer.query("SELECT 2") == [[2]]
    finally:
        shared.close()
