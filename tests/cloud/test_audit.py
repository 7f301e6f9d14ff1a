"""cloud/audit.py against chDB: the ranges devices report against the rows stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloud.api import create_app
from cloud.api.settings import ApiSettings
from cloud.audit import audit
from cloud.migrate import migrate
from cloud.store import ChdbStore

T0 = (int(time.time()) - 86_400) * 1_000_000  # µs, yesterday: inside every TTL


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    s = ChdbStore(Path(tmp_path_factory.mktemp("audit")) / "ch")
    migrate(s)
    yield s
    s.close()


def _fresh(store: ChdbStore) -> None:
    for t in ("readings", "batches", "device_health"):
        store.command(f"TRUNCATE TABLE {t}")


def _health(
    store, device: str, boot: int, first: int | None, last: int | None, uptime: int, overflow=0
):
    f = "NULL" if first is None else str(first)
    la = "NULL" if last is None else str(last)
    store.command(
        "INSERT INTO device_health (device, boot, uptime_s, received, gateway, reset, heap_free,"
        " ring_used, ring_capacity, overflow, retransmits, quarantined, firmware, sampled_first,"
        f" sampled_last, msg_id, stream_seq) VALUES ('{device}', {boot}, {uptime},"
        f" fromUnixTimestamp64Micro({T0}), 'gw', 'power-on', 1000, 0, 1, {overflow}, 0, 0, 'x',"
        f" {f}, {la}, 'm', 1)"
    )


def _batch(store, device: str, boot: int, seq: int, n: int, delay_s: float = 1.0, copies: int = 1):
    """A batch of n readings seq..seq+n-1 sampled at T0 + seq s, received delay_s later."""
    rows = []
    for k in range(n):
        s = seq + k
        for c in range(copies):
            # a copy with another ts survives FINAL: what a broken pipeline would store
            rows.append(
                f"('{device}', 'temperature', fromUnixTimestamp64Micro({T0 + s * 1_000_000 + c}),"
                f" 21.5, {boot}, {s}, {seq}, 0, 'device_clock')"
            )
    store.command(
        "INSERT INTO readings (device, metric, ts, value, boot, seq, batch_seq, device_ts,"
        " time_source) VALUES " + ", ".join(rows)
    )
    received = T0 + (seq + n - 1) * 1_000_000 + int(delay_s * 1_000_000)
    store.command(
        "INSERT INTO batches (device, boot, seq, readings, gateway, spool_id, received, inserted,"
        f" msg_id, stream, stream_seq, deliveries, time_source) VALUES ('{device}', {boot}, {seq},"
        f" {n}, 'gw', 1, fromUnixTimestamp64Micro({received}), now64(6), '{device}:{boot}:{seq}',"
        " 'TELEMETRY', 1, 1, 'device_clock')"
    )


def test_complete_data_passes(store) -> None:
    _fresh(store)
    _health(store, "d1", 1, 0, 99, uptime=10)
    for seq in range(0, 100, 10):
        _batch(store, "d1", 1, seq, 10)
    _batch(store, "d1", 1, 100, 5)  # sent before the next health report
    report = audit(store)
    assert report.ok, report.render()
    (b,) = report.boots
    assert (b.expected, b.present, b.missing, b.duplicated, b.ahead) == (100, 100, 0, 0, 5)
    assert "OK" in report.render()


def test_missing_and_duplicated_are_counted_and_listed(store) -> None:
    _fresh(store)
    _health(store, "d1", 1, 0, 49, uptime=10)
    _health(store, "d1", 1, 0, 79, uptime=20)  # the widest report counts
    _health(store, "d2", 3, 0, 9, uptime=5, overflow=2)
    _batch(store, "d1", 1, 0, 10)
    _batch(store, "d1", 1, 20, 10, copies=2)  # 10 duplicated
    _batch(store, "d1", 1, 40, 30)  # 10..19 and 70..79 missing
    _batch(store, "d2", 3, 3, 4)  # 0..2 and 7..9 missing
    report = audit(store)
    assert not report.ok
    d1, d2 = report.boots
    assert (d1.device, d1.expected, d1.present, d1.missing, d1.duplicated) == ("d1", 80, 50, 30, 10)
    assert d1.missing_ranges == [(10, 19), (30, 39), (70, 79)]
    assert (d2.missing, d2.overflow, d2.missing_ranges) == (6, 2, [(0, 2), (7, 9)])
    assert report.totals()["missing"] == 36
    assert "FAILED" in report.render()
    assert audit(store, device="d2").boots == [d2]


def test_late_readings(store) -> None:
    _fresh(store)
    _health(store, "d1", 1, 0, 19, uptime=10)
    _batch(store, "d1", 1, 0, 10, delay_s=2)
    _batch(store, "d1", 1, 10, 10, delay_s=3600)  # buffered in flash for an hour
    report = audit(store, late_s=300)
    assert report.ok
    # a batch's readings were sampled 0..9 s before its last one: all ten are over 300 s late
    assert report.boots[0].late == 10


def test_nothing_reported_is_an_empty_ok_audit(store) -> None:
    _fresh(store)
    _health(store, "d1", 1, None, None, uptime=1)
    report = audit(store)
    assert report.ok and report.boots == []


def test_audit_over_http(store) -> None:
    _fresh(store)
    _health(store, "d1", 1, 0, 19, uptime=10)
    _batch(store, "d1", 1, 0, 10)
    app = create_app(ApiSettings(), store, {"s3cret-token-for-tests": "tester"})
    auth = {"Authorization": "Bearer s3cret-token-for-tests"}
    with TestClient(app) as c:
        assert c.get("/audit").status_code == 401
        body = c.get("/audit", headers=auth).json()
        assert body["ok"] is False and body["totals"]["missing"] == 10
        assert body["boots"][0]["missing_ranges"] == [[10, 19]]
        one = c.get("/devices/d1/audit?late_s=0", headers=auth).json()
        assert one["boots"][0]["late"] == 10
        assert c.get("/audit?late_s=-1", headers=auth).status_code == 422
        assert c.get("/devices/d2/audit", headers=auth).json()["boots"] == []


def seed_for_the_command(path: str) -> None:
    """d1 complete, d2 missing 5..9: run in a process of its own (chDB: one session each)."""
    s = ChdbStore(Path(path))
    try:
        migrate(s)
        _health(s, "d1", 1, 0, 9, uptime=10)
        _batch(s, "d1", 1, 0, 10)
        _health(s, "d2", 1, 0, 9, uptime=10)
        _batch(s, "d2", 1, 0, 5)
    finally:
        s.close()


def test_audit_command(tmp_path: Path) -> None:
    path = tmp_path / "ch"
    seed = f"from tests.cloud.test_audit import seed_for_the_command as s; s({str(path)!r})"
    subprocess.run([sys.executable, "-c", seed], check=True, timeout=120)
    env = {**os.environ, "RINGTAIL_CHDB_PATH": str(path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ringtail.cli", "audit", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    one = run("--device", "d1")
    assert one.returncode == 0, one.stderr
    assert "OK" in one.stdout and "d1" in one.stdout
    both = run("--json")
    assert both.returncode == 1, both.stderr
    report = json.loads(both.stdout)
    assert report["totals"]["missing"] == 5
    assert report["boots"][1]["missing_ranges"] == [[5, 9]]
    assert run("--late", "-1").returncode == 2
    assert run("--api", "http://127.0.0.1:9").returncode == 2  # no token
    down = run("--api", "http://127.0.0.1:9", "--token", "t")
    assert down.returncode == 4 and "did not answer" in down.stderr
