"""The aarch64 CRC-32C path (ARMv8 CRC32C instructions), which no x86-64 build compiles: the
C self-check tests/native/crc32c_check.c, cross-compiled with Debian's aarch64 gcc and run
under qemu-aarch64 (natively with the host compiler on an aarch64 host).

Where the cross compiler or qemu is missing, the test installs them with apt-get when it runs
as root (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user: ~55 MB, under a minute on
a fresh Debian), and otherwise skips saying what is missing. RINGTAIL_NO_APT=1 disables the
installation."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

import pytest
from native_series import ROOT

from native._build import CFLAGS
from tests.debian import require_tools

NATIVE = ROOT / "native"
DRIVER = ROOT / "tests" / "native" / "crc32c_check.c"
PACKAGES = ("gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "qemu-user")
NATIVE_HOST = platform.machine() in ("aarch64", "arm64")


def _expected_backend() -> str:
    """qemu's default CPU, like every aarch64 server, has the CRC32 extension; an aarch64
    host says in /proc/cpuinfo."""
    if not NATIVE_HOST:
        return "armv8-crc"
    with open("/proc/cpuinfo") as f:
        return "armv8-crc" if " crc32" in f.read() else "portable"


@pytest.fixture(scope="module")
def toolchain() -> tuple[str, list[str]]:
    """(C compiler for aarch64, command prefix that runs an aarch64 executable)."""
    if NATIVE_HOST:
        cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            pytest.skip("no C compiler on this aarch64 host (gcc or cc)")
        return cc, []
    require_tools(("aarch64-linux-gnu-gcc", "qemu-aarch64"), PACKAGES)
    return "aarch64-linux-gnu-gcc", ["qemu-aarch64"]


def _build_and_run(toolchain, tmp_path, flags, env=None) -> tuple[str, int, int]:
    cc, runner = toolchain
    exe = tmp_path / "crc32c_check"
    link = [] if NATIVE_HOST else ["-static"]  # qemu then needs no aarch64 sysroot
    cmd = [cc, *flags, "-Werror", "-I", NATIVE, DRIVER, NATIVE / "crc32c.c", "-o", exe, *link]
    proc = subprocess.run([*map(str, cmd), "-lpthread"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("RINGTAIL_CRC32C")}
    proc = subprocess.run(
        [*runner, str(exe)], capture_output=True, text=True, env=run_env | (env or {}), timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    backend, hw, checks = proc.stdout.split()
    return backend, int(hw), int(checks)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "flags",
    [CFLAGS, [*CFLAGS, "-march=armv8-a+crc"]],
    ids=["extension-flags", "march-armv8-a+crc"],
)
def test_armv8_crc_path_matches_vectors_and_portable(toolchain, tmp_path, flags):
    # With the extension's own flags the CRC instructions come from target("+crc") alone.
    backend, hw, checks = _build_and_run(toolchain, tmp_path, flags)
    assert (backend, hw) == (_expected_backend(), int(_expected_backend() != "portable"))
    assert checks > 100_000


@pytest.mark.timeout(600)
def test_portable_switch_on_aarch64(toolchain, tmp_path):
    env = {"RINGTAIL_CRC32C_PORTABLE": "1"}
    assert _build_and_run(toolchain, tmp_path, CFLAGS, env)[0] == "portable"
    backend = _build_and_run(toolchain, tmp_path, CFLAGS, {"RINGTAIL_CRC32C_PATH": "pclmul"})[0]
    assert backend == _expected_backend()  # an x86-64 path named: the best one below it
