"""The whole pipeline (issue 9): three virtual boards running the firmware's own files,
deployed by mpremote, through a real gateway and nats-server into ClickHouse (chDB), with
the faults of a real deployment injected while they sample: a board power-cycled mid-uplink,
the gateway killed and restarted, nats-server restarted, and the gateway away longer than a
board's RAM could hold. Then: every reading each board reports as sampled is stored exactly
once (`ringtail audit`), every batch's time estimate is right within the uncertainty the
board reported, and the live view shows the boards in a real browser.

One stack for the module: the tests run in order and each builds on the previous one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from protocol import parse_batch, parse_envelope, parse_health
from ringtail.stack import Stack, StackConfig
from tests.debian import require_tools
from tests.gateway.harness import stream_messages, wait_until

DEVICES = 3
PERIOD_MS = 200  # 5 Hz per metric: ~10 readings/s per board
BATCH_S = 2  # a board's RAM holds one 2 s window; anything longer waits in flash
SAMPLE_S = 90  # undisturbed sampling before the faults; the run is about 3 minutes in all
OUTAGE_S = 25  # gateway away: a dozen windows per board go to flash


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    var = tmp_path_factory.mktemp("stack") / "var"
    config = StackConfig.on_free_ports(
        var,
        devices=DEVICES,
        batch_s=BATCH_S,
        health_s=5,  # the firmware's minimum
        period_ms=PERIOD_MS,
        ack_timeout_ms=300,  # a faster recovery than RFC 7252's 2 s, for test time
        backoff_max_s=2,
    )
    lines: list[str] = []
    s = Stack(config, say=lines.append).start()
    s.lines = lines  # type: ignore[attr-defined]
    s.sampling_since = time.monotonic()  # type: ignore[attr-defined]
    yield s
    s.stop()


def api(stack: Stack, path: str):
    req = urllib.request.Request(
        stack.api_url + path, headers={"Authorization": f"Bearer {stack.token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def audit(stack: Stack) -> dict:
    return api(stack, "/audit?late_s=3600")


def wait_exactly_once(stack: Stack, timeout_s: float = 120, min_expected: int = 0) -> dict:
    """Until every reading the boards report as sampled is stored, and they report at
    least `min_expected` (their health reports lag their sampling), or time is up."""
    last: dict = {}

    def done() -> bool:
        nonlocal last
        stack.check()
        last = audit(stack)
        seen = {b["device"] for b in last["boots"]}
        enough = last["totals"]["expected"] >= min_expected
        return last["ok"] and enough and seen == set(stack.config.device_ids())

    try:
        wait_until(done, timeout_s, "every sampled reading stored", interval_s=1)
    except TimeoutError:
        raise AssertionError(json.dumps(last, indent=1)[:4000]) from None
    return last


def test_boards_are_flashed_and_their_readings_arrive(stack: Stack) -> None:
    assert sum("verified" in line or "verify" in line for line in stack.lines) >= DEVICES, (
        "\n".join(stack.lines)
    )

    def all_reporting() -> bool:
        stack.check()
        latest = api(stack, "/readings/latest?limit=100")["items"]
        return {(i["device"], i["metric"]) for i in latest} == {
            (d, m) for d in stack.config.device_ids() for m in ("humidity", "temperature")
        }

    wait_until(all_reporting, 90, "readings of every board and metric", interval_s=1)
    time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - stack.sampling_since)))
    report = wait_exactly_once(stack)
    assert report["totals"]["duplicated"] == 0


def test_faults_lose_nothing_and_duplicate_nothing(stack: Stack) -> None:
    before = audit(stack)["totals"]["expected"]
    stack.power_cycle(0)  # mid-uplink: it sends a batch every 2 s
    time.sleep(3)
    stack.restart_gateway(kill=True)  # kill -9: its spool recovers, acked batches stay
    time.sleep(3)
    stack.restart_nats()
    time.sleep(3)
    stack.gateway.stop()  # away for longer than a board's RAM holds
    away = datetime.now(UTC)
    time.sleep(OUTAGE_S)
    back = datetime.now(UTC)
    stack.start_gateway()
    # every board kept sampling into flash while the gateway was away, and it all arrives
    # (the critical temperature is never thinned: one reading per period)
    per_board = OUTAGE_S * 1000 // PERIOD_MS
    window = f"start={quote(away.isoformat())}&end={quote(back.isoformat())}"
    counts: dict[str, int] = {}

    def drained() -> bool:
        stack.check()
        for device in stack.config.device_ids():
            path = f"/devices/{device}/readings?metric=temperature&{window}&limit=10000"
            counts[device] = len(api(stack, path)["points"])
        return min(counts.values()) >= per_board * 0.9

    try:
        wait_until(drained, 180, "the outage's readings from flash", interval_s=2)
    except TimeoutError:
        raise AssertionError(f"{counts} of {per_board} each") from None
    report = wait_exactly_once(stack, 180, min_expected=before + DEVICES * per_board)
    totals = report["totals"]
    assert totals["duplicated"] == 0 and totals["missing"] == 0
    boots = {(b["device"], b["boot"]) for b in report["boots"]}
    assert len(boots) >= DEVICES + 1, "the power-cycled board reports a second boot"
    # nothing waited an hour; readings sampled during the outage waited in flash
    assert totals["late"] == 0
    assert api(stack, "/audit?late_s=10")["totals"]["late"] > 0


def test_board_time_is_right_within_its_reported_uncertainty(stack: Stack) -> None:
    """Each batch says wall = device clock + offset ± uncertainty. The truth, per (device,
    boot): a health report made at device time d reached the gateway at wall time r, so the
    true offset is at most r - d (and larger than it by the report's transit, a few ms on
    loopback)."""
    bound: dict[tuple[str, int], int] = {}
    for _subject, _headers, body in stream_messages(stack.nats_url, "HEALTH"):
        env = parse_envelope(body)
        h = parse_health(env.payload)
        if h.device_time_us is not None:
            key = (h.device, h.boot)
            bound[key] = min(bound.get(key, 1 << 62), env.received_us - h.device_time_us)
    checked = 0
    for _subject, _headers, body in stream_messages(stack.nats_url):
        env = parse_envelope(body)
        b = parse_batch(env.payload)
        if b.clock is None or (b.device, b.boot) not in bound:
            continue
        truth = bound[(b.device, b.boot)]
        transit = 50_000  # µs: loopback plus a busy 2-core machine
        err = b.clock.offset_us - truth
        assert -b.clock.uncertainty_us - transit <= err <= b.clock.uncertainty_us, (
            b.device,
            b.boot,
            b.seq,
            err,
            b.clock.uncertainty_us,
        )
        checked += 1
    assert checked >= DEVICES * 10


def test_audit_command_agrees(stack: Stack) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ringtail.cli",
            "audit",
            "--api",
            stack.api_url,
            "--token",
            stack.token,
            "--late",
            "3600",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout
    for device in stack.config.device_ids():
        assert device in proc.stdout


def test_live_view_in_a_real_browser(stack: Stack, tmp_path: Path) -> None:
    browser = require_tools(("chromium",), ("chromium",))["chromium"]
    url = f"{stack.api_url}/live#token={stack.token}"
    common = [
        browser,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--window-size=1280,900",
        "--virtual-time-budget=8000",  # lets the page fetch and draw before the dump
    ]
    dom = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for device in stack.config.device_ids():
        assert f'data-device="{device}"' in dom.stdout, dom.stdout[-3000:]
    assert dom.stdout.count('data-metric="temperature"') == DEVICES
    assert dom.stdout.count("<polyline") >= 2 * DEVICES, "each metric is drawn"
    assert "boot " in dom.stdout and "firmware" in dom.stdout  # health line
    shot = tmp_path / "live.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=False
    )
    assert shot.exists() and shot.stat().st_size > 10_000
    print(f"live view screenshot: {shot}")
