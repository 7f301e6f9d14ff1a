"""Run the MicroPython test scripts in firmware/tests/ under the unix port with a 64 KB heap.

Scripts speak the line protocol of firmware/tests/mptest.py. Firmware and test modules are
compiled with mpy-cross first, as on a device: compiling source at import time would not
fit a 64 KB heap next to the data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
SCRIPTS = FIRMWARE / "tests"
HEAP = "64K"


def tool(name: str) -> str:
    """A tool from the venv that runs pytest, else from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH")
    return found


def firmware_modules() -> list[Path]:
    return sorted(FIRMWARE.glob("*.py"))


def script_modules() -> list[Path]:
    return sorted(SCRIPTS.glob("*.py"))


def compile_all(out: Path) -> tuple[dict[str, int], dict[str, str]]:
    """mpy-cross every firmware and test module into `out`. Returns the .mpy sizes and the
    compiler's output for any module that failed (tests that import it will fail too)."""
    sizes: dict[str, int] = {}
    errors: dict[str, str] = {}
    for src in firmware_modules() + script_modules():
        dst = out / (src.stem + ".mpy")
        done = subprocess.run(
            [tool("mpy-cross"), "-o", str(dst), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not dst.exists():
            errors[src.name] = done.stdout + done.stderr
            continue
        sizes[src.name] = dst.stat().st_size
    return sizes, errors


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
    """A ROMFS image of every compiled module: how the firmware sits on a board's flash."""
    from mpremote.romfs import make_romfs

    out.write_bytes(make_romfs(str(mpy_dir) + "/", mpy_cross=False))
    return out


def free_heap_of_a_64k_board() -> int:
    """gc.mem_free() of a fresh `micropython -X heapsize=64K`: what the firmware gets."""
    code = "import gc; gc.collect(); print(gc.mem_free())"
    out = subprocess.run(
        [tool("micropython"), "-X", f"heapsize={HEAP}", "-c", code],
        env=dict(os.environ, MICROPYPATH=".frozen"),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


# Runs `script` from a ROMFS image mounted at /rom, as MicroPython >= 1.25 boards run code
# deployed with `mpremote romfs deploy`: bytecode executes in place from flash and only the
# data is in the heap. The unix port has no flash to map, so the image is read into the heap
# first and a pad is allocated after it until exactly the free heap of a 64 KB board is left.
_ROM_LAUNCH = """\
import gc, sys, vfs
f = open({image!r}, "rb")
img = bytearray(f.seek(0, 2))
f.seek(0)
f.readinto(img)
f.close()
vfs.mount(vfs.VfsRom(img), "/rom")
sys.path.insert(0, "/rom")
sys.argv[:] = {argv!r}
f = None
gc.collect()
pad = bytearray(max(0, gc.mem_free() - {free} - 16))
gc.collect()
print("METRIC heap_free_at_start", gc.mem_free())
import {script}
"""


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
        code = _ROM_LAUNCH.format(image=str(image), argv=argv, free=free, script=script)
        heap = 65536 + image.stat().st_size + 8192
        env = dict(os.environ, MICROPYPATH=".frozen")
        cmd = [tool("micropython"), "-X", f"heapsize={heap}", "-c", code]
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
