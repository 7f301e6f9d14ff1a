"""What ships in gateway/deploy/ is valid and says what the code does."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, load_config

from .harness import NatsServer, http_get, wait_until

DEPLOY = Path(__file__).resolve().parents[2] / "gateway" / "deploy"
RINGTAIL = Path(sys.executable).parent / "ringtail"
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package systemd)",
)


def _unit_here(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at this venv's ringtail.
    text = (DEPLOY / "ringtail-gateway.service").read_text()
    unit = tmp_path / "ringtail-gateway.service"
    unit.write_text(text.replace("/opt/ringtail/bin/ringtail", str(RINGTAIL)))
    return unit


@needs_systemd
def test_unit_passes_systemd_analyze_verify(tmp_path):
    out = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out


@needs_systemd
def test_unit_exposure_score_is_low(tmp_path):
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout)
    assert score, out.stdout + out.stderr
    assert float(score.group(1)) <= 2.0


def test_unit_is_a_notify_service_with_a_watchdog():
    text = (DEPLOY / "ringtail-gateway.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StateDirectory=ringtail-gateway",
    ):
        assert line in text


def test_example_config_shows_the_defaults():
    config = load_config(DEPLOY / "gateway.toml")
    defaults = GatewayConfig()
    expected = replace(
        defaults,
        id=config.id,
        spool=replace(defaults.spool, dir=Path("/var/lib/ringtail-gateway/spool")),
    )
    assert config == expected


def test_shipped_nats_config_syncs_every_write(tmp_path):
    server = NatsServer(tmp_path)
    text = (DEPLOY / "nats-server.conf").read_text()
    text = text.replace("/var/lib/nats", str(tmp_path / "store"))
    text = text.replace("port: 4222", f"port: {server.port}")
    text = text.replace("http_port: 8222", f"http_port: {server.monitor}")
    conf = tmp_path / "nats.conf"
    conf.write_text(text)
    proc = subprocess.Popen(
        [str(RINGTAIL.parent / "nats-server"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        jsz = wait_until(
            lambda: http_get(f"http://127.0.0.1:{server.monitor}/jsz"),
            20,
            "nats-server with the shipped config",
        )
        assert json.loads(jsz)["config"]["sync_always"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=20)
