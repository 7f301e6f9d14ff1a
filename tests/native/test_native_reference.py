"""firmware/tscodec.py (the device's encoder) against the C codec: identical bytes, both ways,
under CPython in-process and under the MicroPython unix port with the device's 64 KB heap."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_series import ROOT, TSCODEC_PATH, TSENC_PATH, bits, named_series

import native

SERIES_256 = named_series(256, seed=21)
BIN = ROOT / ".venv" / "bin"


@pytest.mark.parametrize("name", sorted(SERIES_256))
def test_reference_encoder_writes_the_c_encoders_bytes(tscodec, name):
    ts, vs = SERIES_256[name]
    assert tscodec.Codec(256).encode(ts.tolist(), vs.tolist()) == native.encode(ts, vs)


@pytest.mark.parametrize("name", sorted(SERIES_256))
def test_reference_decoder_reads_c_blocks(tscodec, name):
    ts, vs = SERIES_256[name]
    t2, v2 = tscodec.Codec(256).decode(native.encode(ts, vs))
    assert list(t2) == ts.tolist()
    assert bits(v2) == bits(vs)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**63), 2**63 - 1),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.integers(-(10**7), 10**7).map(lambda k: k / 100),
                st.integers(-(2**15), 2**15).map(lambda k: k * (3.3 / 4096)),
            ),
        ),
        max_size=260,
    )
)
def test_reference_and_c_agree_on_random_series(tscodec, points):
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    block = native.encode(np.array(ts, dtype=np.int64), np.array(vs, dtype=np.float64))
    assert tscodec.Codec(260).encode(ts, vs) == block


@pytest.mark.parametrize(
    "name", ["steady_decimal_with_exceptions", "gaps_vibration_adc", "jitter_random_bits"]
)
def test_reference_rejects_what_c_rejects(tscodec, name):
    ts, vs = SERIES_256[name]  # decimal, scaled and XOR mode
    block = native.encode(ts, vs)
    codec = tscodec.Codec(256)
    for cut in range(len(block)):
        with pytest.raises(tscodec.CodecError):
            codec.decode(block[:cut])
    buf = bytearray(block)
    for bit in range(0, len(block) * 8, 7):
        buf[bit >> 3] ^= 1 << (bit & 7)
        try:
            want = native.decode(buf)
        except native.CodecError:
            with pytest.raises(tscodec.CodecError):
                codec.decode(buf)
        else:
            got = codec.decode(buf)
            assert list(got[0]) == want[0].tolist()
            assert bits(got[1]) == bits(want[1])
        buf[bit >> 3] ^= 1 << (bit & 7)


def test_reference_codec_validates_sizes(tscodec):
    with pytest.raises(ValueError):
        tscodec.Codec(4).encode([1] * 5, [1.0] * 5)
    with pytest.raises(ValueError):
        tscodec.Codec(4).encode([1, 2], [1.0])


MP_DRIVER = """
import sys, struct, gc
from array import array
sys.path.insert(0, sys.argv[1])
import tscodec
codec = tscodec.Codec(256)
# One binary file per case (n int64 timestamps, then n float64 values): the harness must not
# need much more heap than the codec it is testing.
for name in sys.argv[2:]:
    with open(sys.argv[1] + '/' + name + '.in', 'rb') as f:
        raw = f.read()
    n = len(raw) // 16
    # Typed arrays, as the firmware's sample buffers are.
    ts = array('q', raw[:8 * n])
    vs = array('d', raw[8 * n:])
    gc.collect()
    block = codec.encode(ts, vs)
    with open(sys.argv[1] + '/' + name + '.out', 'wb') as f:
        f.write(block)
    vs = None
    gc.collect()
    t2, v2 = codec.decode(block)
    ok = True
    for i in range(n):
        ok = ok and t2[i] == ts[i] and struct.pack('<d', v2[i]) == raw[8 * (n + i):8 * (n + i) + 8]
    ts = t2 = v2 = block = raw = vs = None
    gc.collect()
    print(name, 1 if ok else 0, gc.mem_free())
"""


def _compile_reference(mpy_cross, out):
    # tscodec and the device's encoder it builds on (tsenc), as the firmware build does.
    for src in (TSENC_PATH, TSCODEC_PATH):
        subprocess.run([str(mpy_cross), "-o", str(out / f"{src.stem}.mpy"), str(src)], check=True)


def test_reference_runs_under_micropython_with_64k_heap(tmp_path):
    micropython, mpy_cross = BIN / "micropython", BIN / "mpy-cross"
    if not micropython.exists() or not mpy_cross.exists():
        if shutil.which("micropython") is None:
            pytest.skip("MicroPython unix port not installed (pip install '.[dev]')")
        micropython, mpy_cross = shutil.which("micropython"), shutil.which("mpy-cross")
    # The device runs compiled modules.
    _compile_reference(mpy_cross, tmp_path)
    cases = {name: tv for name, tv in SERIES_256.items() if len(tv[0])}
    for name, (ts, vs) in cases.items():
        data = np.asarray(ts, "<i8").tobytes() + np.asarray(vs, "<f8").tobytes()
        (tmp_path / f"{name}.in").write_bytes(data)
    (tmp_path / "driver.py").write_text(MP_DRIVER)
    proc = subprocess.run(
        [micropython, "-X", "heapsize=64K", tmp_path / "driver.py", tmp_path, *sorted(cases)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [line.split() for line in proc.stdout.splitlines()]
    assert sorted(r[0] for r in results) == sorted(cases)
    for name, roundtrip_ok, free in results:
        # The module and a 256-point Codec that has encoded and decoded leave about half of
        # the 64 KB heap to the firmware (measured: ~32 KB free).
        assert int(free) >= 28 * 1024, (name, free)
        assert (tmp_path / f"{name}.out").read_bytes() == native.encode(*cases[name]), name
        assert roundtrip_ok == "1", name


def _temperature_counts(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    ts = 1_767_225_600_000 + 1000 * np.arange(n, dtype=np.int64)
    return ts, 2137 + np.cumsum(rng.integers(-3, 4, n))


def test_encode_decimal_from_integers_matches_the_float_encoder(tscodec):
    ts, counts = _temperature_counts()
    block = tscodec.Codec(256).encode_decimal(ts.tolist(), counts.tolist(), 2)
    assert block == native.encode(ts, counts / 100)
    t2, v2 = native.decode(block)
    assert t2.tolist() == ts.tolist()
    assert bits(v2) == bits(counts / 100)


def test_encode_decimal_is_exact_when_the_float_encoder_would_choose_otherwise(tscodec):
    ts, counts = _temperature_counts()
    counts = counts * 10  # every count a multiple of 10: the float encoder picks e = 2
    block = tscodec.Codec(256).encode_decimal(ts.tolist(), counts.tolist(), 3)
    assert block != native.encode(ts, counts / 1000)
    assert bits(native.decode(block)[1]) == bits(counts / 1000)


def test_encode_decimal_validates(tscodec):
    codec = tscodec.Codec(8)
    with pytest.raises(ValueError):
        codec.encode_decimal([1], [1], 19)
    with pytest.raises(ValueError):
        codec.encode_decimal([1], [2**53], 0)
    with pytest.raises(ValueError):
        codec.encode_decimal([1, 2], [1], 0)


MP_COUNTS_DRIVER = """
import sys
from array import array
sys.path.insert(0, sys.argv[1])
import tscodec
with open(sys.argv[1] + '/counts.in', 'rb') as f:
    raw = f.read()
n = len(raw) // 16
ts = array('q', raw[:8 * n])
counts = array('q', raw[8 * n:])
block = tscodec.Codec(256).encode_decimal(ts, counts, 2)
with open(sys.argv[1] + '/counts.out', 'wb') as f:
    f.write(block)
"""


def test_encode_decimal_under_micropython(tmp_path):
    micropython, mpy_cross = BIN / "micropython", BIN / "mpy-cross"
    if not micropython.exists() or not mpy_cross.exists():
        pytest.skip("MicroPython unix port not installed (pip install '.[dev]')")
    _compile_reference(mpy_cross, tmp_path)
    ts, counts = _temperature_counts()
    (tmp_path / "counts.in").write_bytes(
        ts.astype("<i8").tobytes() + counts.astype("<i8").tobytes()
    )
    (tmp_path / "driver.py").write_text(MP_COUNTS_DRIVER)
    proc = subprocess.run(
        [micropython, "-X", "heapsize=64K", tmp_path / "driver.py", tmp_path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "counts.out").read_bytes() == native.encode(ts, counts / 100)
