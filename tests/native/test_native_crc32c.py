"""CRC-32C: standard vectors, splits and offsets, every backend, against the crc32c package."""

from __future__ import annotations

import contextlib
import itertools
import os
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
for _name in ("hw", "fold"):  # whichever this CPU has; the dispatcher picks among them
    with contextlib.suppress(LookupError):
        IMPLS[_name] = native._crc32c_impl(_name)


@pytest.fixture(params=sorted(IMPLS))
def crc(request):
    return IMPLS[request.param]


def test_hardware_backend_exists_on_x86_64_with_sse42():
    with open("/proc/cpuinfo") as f:
        has_sse42 = " sse4_2" in f.read()
    if not has_sse42:
        pytest.skip("this CPU has no SSE4.2: only the portable backend can run")
    assert "hw" in IMPLS


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


def _backend_in_subprocess(env_value: str | None) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "RINGTAIL_CRC32C_PORTABLE"}
    if env_value is not None:
        env["RINGTAIL_CRC32C_PORTABLE"] = env_value
    code = "import native; print(native.CRC32C_BACKEND, native.crc32c(b'123456789'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


def test_environment_switch_forces_portable_backend():
    assert _backend_in_subprocess("1") == ("portable", 0xE3069283)
    default, value = _backend_in_subprocess(None)
    assert value == 0xE3069283
    if "hw" in IMPLS:
        assert default in ("sse4.2", "sse4.2+vpclmulqdq", "armv8-crc")
    else:
        assert default == "portable"


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
