"""`ringtail stack` as a newcomer runs it (`just run`): a process that comes up, says where
to look, stops cleanly on its own (--duration) or on Ctrl-C, and resumes with the data
kept when run again on the same state directory."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.gateway.harness import free_port, wait_until

UP = "ringtail stack is up"


def stack_cmd(var: Path, ports: dict[str, int], *more: str) -> list[str]:
    exe = shutil.which("ringtail", path=str(Path(sys.executable).parent))
    assert exe, "the ringtail console script is not installed in this environment"
    return [
        exe,
        "stack",
        "--devices",
        "1",
        "--batch-s",
        "2",
        "--var",
        str(var),
        "--coap-port",
        str(ports["coap"]),
        "--nats-port",
        str(ports["nats"]),
        "--api-port",
        str(ports["api"]),
        *more,
    ]


def audit(api_port: int, token: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/audit", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def test_a_timed_run_stops_cleanly_and_a_second_run_resumes_on_ctrl_c(tmp_path: Path) -> None:
    var = tmp_path / "var"
    ports = {"coap": free_port(socket.SOCK_DGRAM), "nats": free_port(), "api": free_port()}

    first = subprocess.run(
        stack_cmd(var, ports, "--duration", "20"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert UP in first.stdout and "/live#token=" in first.stdout
    assert first.stdout.rstrip().endswith("stopped")
    token = (var / "api-token").read_text().strip()
    assert token in first.stdout  # the printed token is the kept one

    second = subprocess.Popen(
        stack_cmd(var, ports),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert second.stdout is not None
        said = [""]
        for line in second.stdout:
            said.append(line)
            if UP in line:
                break
        assert UP in said[-1], "the second run did not come up:\n" + "".join(said)
        report: dict = {}

        def both_boots_stored() -> bool:
            nonlocal report
            report = audit(ports["api"], token)
            boots = sorted(b["boot"] for b in report["boots"] if b["device"] == "sim-1")
            return report["ok"] and len(boots) >= 2 and boots[0] < boots[-1]

        try:
            wait_until(both_boots_stored, 90, "the first run's rows and the second's", 1)
        except TimeoutError:
            raise AssertionError(json.dumps(report, indent=1)[:3000]) from None
        first_boot = min(
            (b for b in report["boots"] if b["device"] == "sim-1"), key=lambda b: b["boot"]
        )
        assert first_boot["present"] > 0 and first_boot["missing"] == 0
        second.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    assert second.returncode == 0, out[-3000:]
    assert out.rstrip().endswith("stopped")
    assert "spool fully published" in (var / "logs" / "gateway.log").read_text()
