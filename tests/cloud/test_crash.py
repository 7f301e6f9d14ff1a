"""kill -9 of the writer process at random moments, then restart: the rows equal the
published data exactly and no query shows a duplicate (real nats-server, real chDB)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter

from cloud.store import ChdbStore
from tests.gateway.harness import BIN, wait_until

from .helpers import READ_ROWS, all_acked, ensure_streams, make_batches, publish
from .servers import ROOT

CUTS = 24


def _config(tmp_path, nats_url: str) -> str:
    path = tmp_path / "writer.toml"
    sections = {
        "nats": {"url": nats_url, "ack_wait_s": 1.0, "fetch_messages": 6, "fetch_timeout_s": 0.2},
        "clickhouse": {"chdb_path": str(tmp_path / "ch"), "retry_wait_s": 0.2},
    }
    path.write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
            for name, values in sections.items()
        )
    )
    return str(path)


def _start(config: str, log_path, kill_after_insert: float = 0.0) -> subprocess.Popen:
    """The writer as its own process: the real CLI, or with kill_after_insert > 0 the CLI
    under tests/cloud/crashy_writer.py, which kills itself between an insert and its ack."""
    command = ["cloud", "writer", "--config", config, "--log-level", "debug"]
    if kill_after_insert:
        argv = [sys.executable, "-m", "tests.cloud.crashy_writer", *command]
    else:
        argv = [str(BIN / "ringtail"), *command]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                "PATH": str(BIN),
                "PYTHONUNBUFFERED": "1",
                "RINGTAIL_TEST_KILL_AFTER_INSERT": str(kill_after_insert),
            },
        )


def _phase(log_text: str) -> str:
    """Where the cut landed, from the last step the writer logged."""
    for line in reversed(log_text.splitlines()):
        for step, phase in (
            ("SIGKILL after insert", "inserted, not acked"),
            (" acked ", "after ack"),
            (" inserted ", "inserted, not acked"),
            (" fetched ", "fetched, not inserted"),
            ("writer running", "running, idle"),
        ):
            if step in line:
                return phase
    return "starting"


def test_kill_9_at_random_moments_then_restart_rows_exact(nats_server, tmp_path):
    rng = random.Random(2026)
    batches = make_batches(rng, devices=5, per_device=CUTS * 4, points=60)
    waves = [batches[i::CUTS] for i in range(CUTS)]
    config = _config(tmp_path, nats_server.url)
    asyncio.run(ensure_streams(nats_server.url))
    phases: Counter[str] = Counter()
    for i, wave in enumerate(waves):
        asyncio.run(publish(nats_server.url, wave))
        log_path = tmp_path / f"writer-{i}.log"
        # every third cut: the writer kills itself between an insert and its ack
        crashy = i % 3 == 2
        proc = _start(config, log_path, kill_after_insert=0.5 if crashy else 0.0)
        try:
            wait_until(
                lambda lp=log_path, p=proc: (
                    "writer running" in lp.read_text(errors="replace") or p.poll() is not None
                ),
                60,
                "the writer to run",
            )
            assert "writer running" in log_path.read_text(errors="replace"), log_path.read_text()
            time.sleep(rng.uniform(0.3, 1.2) if crashy else rng.uniform(0.0, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=20)
        phases[_phase(log_path.read_text(errors="replace"))] += 1
    print(f"cuts by phase: {dict(phases)}")
    assert sum(phases.values()) == CUTS >= 20
    # cuts landed inside the fetch → insert → ack cycle, and between insert and ack
    assert phases["fetched, not inserted"] > 0, phases
    assert phases["inserted, not acked"] > 0, phases

    proc = _start(config, tmp_path / "writer-final.log")
    try:
        check = all_acked(nats_server.url)
        wait_until(lambda: asyncio.run(check()), 120, "every message acked", interval_s=0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)

    store = ChdbStore(tmp_path / "ch")
    try:
        want = sorted((r for b in batches for r in b.rows), key=lambda r: (r[0], r[4], r[5]))
        assert [tuple(r) for r in store.query(READ_ROWS)] == want
        assert store.query("SELECT count() FROM readings FINAL") == [[len(want)]]
        assert store.query("SELECT sum(count) FROM readings_1m") == [[len(want)]]
        assert store.query("SELECT sum(count) FROM readings_1h") == [[len(want)]]
        assert store.query("SELECT count() FROM batches FINAL") == [[len(batches)]]
        dup = store.query(
            "SELECT count() FROM (SELECT device, boot, seq FROM readings FINAL "
            "GROUP BY device, boot, seq HAVING count() > 1)"
        )
        assert dup == [[0]]
    finally:
        store.close()
