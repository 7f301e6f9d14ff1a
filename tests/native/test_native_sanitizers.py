"""The C code under AddressSanitizer and UndefinedBehaviorSanitizer, with a 100,000-input fuzz
pass over the decoder (the driver is tests/native/native_fuzz.c) and a 500,000-input one over
the CBOR scan (tests/native/cbor_scan_fuzz.c)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest
from native_series import ROOT, v1_blocks

NATIVE = ROOT / "native"
DRIVER = ROOT / "tests" / "native" / "native_fuzz.c"
FUZZ_INPUTS = 100_000


def _build(tmp_path, flags, driver=DRIVER, native=("crc32c.c", "frames.c", "xor.c", "codec.c")):
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler: the sanitizer build needs gcc or cc")
    exe = tmp_path / driver.stem
    sources = [driver, *(NATIVE / s for s in native)]
    cmd = [cc, *flags, "-I", NATIVE, *sources, "-o", exe, "-lm", "-lpthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode and "sanitize" in proc.stderr and "cannot find" in proc.stderr:
        pytest.skip(f"sanitizer runtime not installed: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    return exe


SANITIZE = [
    "-O1",
    "-g",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-ffp-contract=off",
    "-Wall",
    "-Wextra",
    "-Werror",
]


def _seed_file(path, blobs) -> str:
    """The drivers' seed-file format: each blob after its u32 little-endian length."""
    path.write_bytes(b"".join(struct.pack("<I", len(b)) + b for b in blobs))
    return str(path)


def _run_sanitized(exe, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, check=False)


@pytest.mark.timeout(240)
def test_c_code_under_asan_and_ubsan_with_fuzz_pass(tmp_path):
    exe = _build(tmp_path, SANITIZE)
    # Format 1 blocks (what devices in the field send) seed the mutations too.
    v1 = _seed_file(tmp_path / "v1_blocks.bin", v1_blocks().values())
    proc = _run_sanitized(exe, str(FUZZ_INPUTS), "20261203", v1)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ok, roundtrips, fuzzed, accepted = proc.stdout.split()
    assert ok == "ok" and int(roundtrips) == 400 and int(fuzzed) == FUZZ_INPUTS
    # Mutations that hit padding or a value keep the block valid; most must be rejected.
    assert 0 < int(accepted) < FUZZ_INPUTS // 2


@pytest.mark.parametrize("path", ["portable", "sse42", "pclmul", "vpclmul"])
def test_crc_paths_under_sanitizers(tmp_path, path):
    # tests/native/crc32c_check.c: every CRC entry at every length to 4 KiB and offset to 7 in
    # exact-size heap buffers, with the dispatcher forced onto each path in turn (a path the
    # CPU lacks falls back to the one below; the per-path entries run whatever it has).
    exe = _build(tmp_path, SANITIZE, DRIVER.with_name("crc32c_check.c"), ["crc32c.c"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGTAIL_CRC32C")}
    proc = subprocess.run(
        [exe], capture_output=True, text=True, env=env | {"RINGTAIL_CRC32C_PATH": path}, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert int(proc.stdout.split()[2]) > 100_000
    # The fuzz driver's own CRC pass, on the same path.
    exe = _build(tmp_path, SANITIZE)
    proc = subprocess.run(
        [exe, "1000", "7"],
        capture_output=True,
        text=True,
        env=env | {"RINGTAIL_CRC32C_PATH": path},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


CBOR_FUZZ_INPUTS = 500_000


@pytest.mark.timeout(240)
def test_cbor_scan_under_asan_and_ubsan_with_fuzz_pass(tmp_path):
    # Hostile shapes, then generated and mutated CBOR seeded with the protocol's test vectors.
    exe = _build(tmp_path, SANITIZE, DRIVER.with_name("cbor_scan_fuzz.c"), ["cbor_scan.c"])
    vectors = sorted((ROOT / "protocol" / "vectors").glob("*/*.cbor"))
    assert len(vectors) > 50
    seeds = _seed_file(tmp_path / "vectors.bin", [p.read_bytes() for p in vectors])
    proc = _run_sanitized(exe, str(CBOR_FUZZ_INPUTS), "20261204", seeds)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ok, fuzzed, accepted = proc.stdout.split()
    assert ok == "ok" and int(fuzzed) == CBOR_FUZZ_INPUTS
    # Unmutated seeds and trees are accepted; mutations mostly are not.
    assert CBOR_FUZZ_INPUTS // 100 < int(accepted) < CBOR_FUZZ_INPUTS // 2
