"""CRC-32C: standard vectors, splits and offsets, every backend, against the crc32c package."""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import random
import subprocess
import sys
import threading
import time

import pytest

import native

# RFC 3720 appendix B.4, plus the "check" value of the CRC catalogue.
VECTORS = [
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (
        bytes.fromhex(
            "01c00000000000000000000000000000"
            "14000000000004000000001400000018"
            "28000000000000000200000000000000"
        ),
        0xD9963A56,
    ),
    (b"", 0),
]

IMPLS = {"dispatch": native.crc32c, "portable": native._crc32c_impl("portable")}
for _name in ("hw", "pclmul", "fold"):  # whichever this CPU has; the dispatcher picks among them
    with contextlib.suppress(LookupError):
        IMPLS[_name] = native._crc32c_impl(_name)

# RINGTAIL_CRC32C_PATH values, each with its backend name (x86-64; "hw" is "armv8-crc" on
# aarch64), in order: a path the CPU lacks falls back to the best one before it.
HW_NAME = "armv8-crc" if platform.machine() in ("aarch64", "arm64") else "sse4.2"
PATHS = [
    ("portable", "portable", "portable"),
    ("sse42", "hw", HW_NAME),
    ("pclmul", "pclmul", HW_NAME + "+pclmul"),
    ("vpclmul", "fold", HW_NAME + "+vpclmulqdq"),
]


def _expected_backend(path: str) -> str:
    """The backend RINGTAIL_CRC32C_PATH=path selects on this CPU."""
    best = "portable"
    for env_name, impl, backend in PATHS:
        if impl in IMPLS:
            best = backend
        if env_name == path:
            return best
    raise AssertionError(path)


@pytest.fixture(params=sorted(IMPLS))
def crc(request):
    return IMPLS[request.param]


def test_hardware_backends_exist_where_the_cpu_has_them():
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    if " sse4_2" not in flags:
        pytest.skip("this CPU has no SSE4.2: only the portable backend can run")
    assert "hw" in IMPLS
    assert ("pclmul" in IMPLS) == (" pclmulqdq" in flags)
    assert ("fold" in IMPLS) == all(f" {f}" in flags for f in ("avx512vl", "vpclmulqdq"))
    # The best path, unless this run forces one (RINGTAIL_CRC32C_PATH=pclmul pytest ... runs
    # the dispatcher tests as a CPU without AVX-512 would).
    forced = os.environ.get("RINGTAIL_CRC32C_PATH") or "vpclmul"
    forced = {"hw": "sse42", "sse4.2": "sse42", "armv8-crc": "sse42", "fold": "vpclmul"}.get(
        forced, forced
    )
    if forced not in [p[0] for p in PATHS]:
        forced = "vpclmul"
    if os.environ.get("RINGTAIL_CRC32C_PORTABLE") == "1":
        forced = "portable"
    want = _expected_backend(forced)
    assert want == native.CRC32C_BACKEND


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_standard_vectors(crc, data, expected):
    assert crc(data) == expected


def test_every_split_point_extends(crc):
    data = random.Random(1).randbytes(1100)
    whole = crc(data)
    for k in range(len(data) + 1):
        assert crc(data[k:], crc(data[:k])) == whole, k


def test_every_offset_and_length_across_chunk_paths(crc):
    # Lengths straddle the 8-byte, 3x256 and 3x8192 three-stream boundaries and the folding
    # path's 1 KiB threshold, 256-byte main loop and 64-byte tail loop.
    import crc32c as peer

    buf = bytearray(random.Random(2).randbytes(3 * 8192 * 2 + 64))
    mv = memoryview(buf)
    lengths = [0, 1, 7, 8, 9, 767, 768, 769, 3 * 256 + 8, 1023, 1024, 1025, 1087, 1088, 1279]
    lengths += [1280, 1343, 4096 + 63, 24575, 24576, 24577, 49151, 49159]
    for off in range(16):
        for n in lengths:
            assert crc(mv[off : off + n]) == peer.crc32c(bytes(mv[off : off + n])), (off, n)


def test_every_length_through_the_folding_thresholds(crc):
    # Every length to 5,000 bytes: the PCLMULQDQ kernel's 64- and 16-byte steps and its
    # 1,632-byte blocks (three of them, each tail length after each), the dispatchers' 128,
    # 1,024-byte thresholds, the VPCLMULQDQ kernel's 256-byte steps.
    import crc32c as peer

    data = memoryview(random.Random(5).randbytes(5003))
    for n in range(5001):
        chunk = data[n % 3 : n % 3 + n]
        assert crc(chunk, n) == peer.crc32c(chunk, n), n


def test_long_buffers(crc):
    import crc32c as peer

    data = memoryview(random.Random(6).randbytes((3 << 20) + 64))
    for off, n in ((0, 1 << 20), (5, (1 << 20) + 12345), (3, 3 << 20), (1, 100_003)):
        assert crc(data[off : off + n], 7) == peer.crc32c(data[off : off + n], 7), (off, n)


def test_matches_crc32c_package_on_random_data(crc):
    import crc32c as peer

    rnd = random.Random(3)
    for _ in range(300):
        data = rnd.randbytes(rnd.choice([rnd.randrange(64), rnd.randrange(70_000)]))
        seed = rnd.getrandbits(32)
        assert crc(data, seed) == peer.crc32c(data, seed)


def test_accepts_buffers_without_copy():
    import array

    import numpy as np

    data = random.Random(4).randbytes(4096)
    want = native.crc32c(data)
    assert native.crc32c(bytearray(data)) == want
    assert native.crc32c(memoryview(data)) == want
    assert native.crc32c(array.array("B", data)) == want
    assert native.crc32c(np.frombuffer(data, dtype=np.uint64)) == want
    doubled = bytes(b for b in data for _ in range(2))
    assert native.crc32c(memoryview(doubled)[::2]) == want  # strided: copied, same CRC


def test_rejects_bad_arguments():
    with pytest.raises(TypeError):
        native.crc32c("text")
    with pytest.raises(ValueError):
        native.crc32c(b"x", -1)
    with pytest.raises(ValueError):
        native.crc32c(b"x", 2**32)


# Run in a fresh interpreter (the backend is chosen once, at first use): prints the backend,
# then checks rt_crc32c against the crc32c package at lengths across every threshold.
_SUBPROCESS_CHECK = """
import random, crc32c, native
print(native.CRC32C_BACKEND, native.crc32c(b"123456789"))
data = random.Random(7).randbytes(70_000)
lengths = [*range(0, 2200), 3 * 1632 + 17, 24575, 24576, 24577, 49159, 70_000]
for n in lengths:
    assert native.crc32c(data[:n], n) == crc32c.crc32c(data[:n], n), n
"""


def _backend_in_subprocess(env_extra: dict[str, str]) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGTAIL_CRC32C")}
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_CHECK],
        env=env | env_extra,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    backend, value = proc.stdout.split()
    return backend, int(value)


def test_environment_switch_forces_portable_backend():
    assert _backend_in_subprocess({"RINGTAIL_CRC32C_PORTABLE": "1"}) == ("portable", 0xE3069283)
    # The older switch wins over the newer one.
    env = {"RINGTAIL_CRC32C_PORTABLE": "1", "RINGTAIL_CRC32C_PATH": "vpclmul"}
    assert _backend_in_subprocess(env) == ("portable", 0xE3069283)
    default, value = _backend_in_subprocess({})
    assert value == 0xE3069283
    assert default == _expected_backend("vpclmul")


@pytest.mark.parametrize("path", [p[0] for p in PATHS])
def test_environment_switch_forces_each_path(path):
    # The dispatcher itself on each path, thresholds included (the per-path entries the other
    # tests use call each kernel directly).
    assert _backend_in_subprocess({"RINGTAIL_CRC32C_PATH": path}) == (
        _expected_backend(path),
        0xE3069283,
    )


@pytest.mark.parametrize(("alias", "path"), [("hw", "sse42"), ("fold", "vpclmul")])
def test_environment_switch_aliases(alias, path):
    assert _backend_in_subprocess({"RINGTAIL_CRC32C_PATH": alias})[0] == _expected_backend(path)


def test_environment_switch_unknown_name_warns_and_keeps_the_best():
    code = "import native; print(native.CRC32C_BACKEND)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGTAIL_CRC32C")}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env | {"RINGTAIL_CRC32C_PATH": "pclmull"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.split() == [_expected_backend("vpclmul")]
    assert "RuntimeWarning" in proc.stderr and "pclmull" in proc.stderr


def _longest_stall(slow, data) -> tuple[float, float]:
    """(longest gap between main-thread ticks while `slow(data)` runs on a worker, its run
    time). The worker starts its call only once the main thread is ticking."""
    go = threading.Event()
    window: list[float] = []

    def work():
        go.wait()
        t = time.perf_counter()
        slow(data)
        window.extend((t, time.perf_counter()))

    worker = threading.Thread(target=work)
    worker.start()
    ticks = []
    go.set()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    t0, t1 = window
    points = [t0, *(t for t in ticks if t0 <= t <= t1), t1]
    return max(b - a for a, b in itertools.pairwise(points)), t1 - t0


def test_gil_released_during_long_call():
    # One ~50-150 ms C call (the portable path is the slow one) on a worker thread: the main
    # thread must keep running meanwhile.
    data = bytes(96 << 20)
    stall, span = _longest_stall(IMPLS["portable"], data)
    assert stall < span / 2, (stall, span)
    # Control: bytes.count holds the GIL for its whole run, and the method sees it.
    stall, span = _longest_stall(lambda d: d.count(b"\x01"), data)
    assert stall > span / 2, (stall, span)
