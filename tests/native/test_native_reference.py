"""firmware/tscodec.py (the device's encoder) against the C codec: identical bytes, both ways,
under CPython in-process and under the MicroPython unix port with the device's 64 KB heap."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_series import ROOT, TSCODEC_PATH, TSENC_PATH, bits, named_series, v1_blocks

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


def test_reference_decodes_format_1_blocks(tscodec):
    series = named_series(300, seed=11)
    codec = tscodec.Codec(300)
    for name, block in v1_blocks().items():
        t2, v2 = codec.decode(block)
        assert list(t2) == series[name][0].tolist(), name
        assert bits(v2) == bits(series[name][1]), name


@pytest.mark.parametrize(
    "name",
    [
        "steady_decimal_with_exceptions",
        "gaps_vibration_adc",
        "jitter_random_bits",
        "v1_steady_decimal_with_exceptions",
        "v1_gaps_vibration_adc",
        "sparse_zero_runs",
    ],
)
def test_reference_rejects_what_c_rejects(tscodec, name):
    if name.startswith("v1_"):  # format 1, from devices that predate format 2
        block = v1_blocks()[name[3:]]
    elif name == "sparse_zero_runs":  # sparse frames in both sections
        ts = np.cumsum(np.where(np.arange(256) % 5 == 0, 1001, 1000))
        vs = np.where(np.arange(256) % 24 < 12, 0.0, np.arange(256) % 7 * 1.5)
        block = native.encode(ts, vs)
    else:
        ts, vs = SERIES_256[name]  # decimal, scaled and XOR mode
        block = native.encode(ts, vs)
    codec = tscodec.Codec(300)
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


# Series at the edges of tsenc's small-int path (|x| <= 2**29 - 1, x a delta of delta, a count
# or a count's delta) and past them: (timestamps, counts, e, whether the float encoder picks
# decimal mode with this e, so that encode_decimal's bytes must be the C encoder's).
_S = 2**29 - 1


def _integrated(t0: int, d0: int, dds: list[int]) -> list[int]:
    ts = [t0, t0 + d0]
    d = d0
    for x in dds:
        d += x
        ts.append(ts[-1] + d)
    return ts


def _sprinkled(n: int, c0: int) -> list[int]:
    counts = [c0 + (i * 7) % 13 - 6 for i in range(n)]
    edges = [_S, -_S, _S + 1, -_S - 1, 2**30, -(2**30), 2**53 - 1, 1 - 2**53]
    for j, v in enumerate(edges):
        counts[1 + j * (n - 2) // len(edges)] = v
    return counts


def _edge_series() -> dict[str, tuple[np.ndarray, np.ndarray, int, bool]]:
    dds = [_S, -_S, _S + 1, -_S - 1, _S + 2, 2**30, -(2**30), 2**30 - 1, 0, 5]
    dds += [-(2**31), 2**31, 0, -(2**53), 2**53 - 1, 0]
    steady = [1_000_000 * i for i in range(256)]
    rng = np.random.default_rng(29)
    jitter = [t + int(j) for t, j in zip(steady, rng.integers(-2000, 2001, 256), strict=True)]
    walk = (2150 + np.cumsum(rng.integers(-3, 4, 256))).tolist()
    edges = [_S, -_S, _S + 1, -_S - 1, 2**30, -(2**30), 2**53 - 1, 1 - 2**53, 0, 1]
    near_62 = _integrated(2**62 - 3000, 1000, [0, 0, 1, -1, 0, 0, 0])
    extremes = [-(2**63), 2**63 - 1, -(2**63), 0, 2**62, -(2**62)]
    extremes += [2**29, -(2**29), _S, -_S, 2**30, -(2**30)]
    cases = {
        "us_offsets_temperature": (jitter, walk, 2, True),
        "dd_edges": (_integrated(0, 1_000_000, dds), _sprinkled(len(dds) + 2, 2150), 2, True),
        "dd_edges_negative": (
            _integrated(-(2**40), -1_000_000, dds),
            _sprinkled(len(dds) + 2, 2150),
            2,
            True,
        ),
        "across_2_62": (near_62, list(range(len(near_62))), 1, True),
        "extreme_timestamps": (extremes, [0] * len(extremes), 0, True),
        "count_edges_130": (steady[:130], _sprinkled(130, 2150), 0, True),
        "count_edges_130_e2": (steady[:130], _sprinkled(130, 2150), 2, True),
        "count_edges_130_around_0": (steady[:130], _sprinkled(130, 0), 0, True),
        "count_edges_64": (steady[:64], _sprinkled(64, 2150), 0, True),
        "count_edges_alone": (steady[: len(edges)], edges, 0, False),
        "count_alternating_2_53": (
            steady[:20],
            [2**53 - 1 if i & 1 else 1 - 2**53 for i in range(20)],
            0,
            False,
        ),
        "count_constant_2_53": (steady[:20], [2**53 - 1] * 20, 0, True),
    }
    return {
        name: (np.array(ts, dtype=np.int64), np.array(counts, dtype=np.int64), e, decimal)
        for name, (ts, counts, e, decimal) in cases.items()
    }


EDGES = _edge_series()


@pytest.mark.parametrize("name", sorted(EDGES))
def test_encode_decimal_at_the_small_int_edges_matches_c(tscodec, name):
    ts, counts, e, decimal = EDGES[name]
    values = counts / 10**e
    block = tscodec.Codec(256).encode_decimal(ts.tolist(), counts.tolist(), e)
    t2, v2 = native.decode(block)
    assert t2.tolist() == ts.tolist()
    assert bits(v2) == bits(values)
    want = native.encode(ts, values)
    assert tscodec.Codec(256).encode(ts.tolist(), values.tolist()) == want
    if decimal:
        assert block == want


def test_device_encoder_keeps_small_values_in_small_ints_of_32_bit_ports(tscodec):
    # The 32-bit ports' small ints end at 2**30 (the unix port's, where the MicroPython tests
    # run, at 2**62). On series whose values all stay on tsenc's small-int path, no local
    # variable of tsenc's functions is ever past that, at any line: so the ESP32 and RP2040
    # take no long ints either (what a line computes on its way to a local is bounded in
    # tsenc.py's comments).
    tsenc = sys.modules["tsenc"]
    lo, hi = -(2**30), 2**30 - 1
    seen = []

    def tracer(frame, event, arg):
        if frame.f_code.co_filename != str(TSENC_PATH):
            return None
        for var, v in frame.f_locals.items():
            if type(v) is int and not lo <= v <= hi:
                seen.append((frame.f_code.co_name, frame.f_lineno, var, v))
        if event == "return" and type(arg) is int and not lo <= arg <= hi:
            seen.append((frame.f_code.co_name, frame.f_lineno, "return", arg))
        return tracer

    ts, counts, _, _ = EDGES["us_offsets_temperature"]
    series = [
        (ts.tolist(), counts.tolist()),
        ([0, _S, 2 * _S, 2 * _S], [_S, _S, 0, -_S]),  # every edge value, none past it
        ([0, -_S, -2 * _S, -2 * _S], [-_S, 0, _S, _S]),
        ([0, 1, 2, 3] * 40, [(i * 7919) % (2**28) for i in range(160)]),  # 28-bit items
    ]
    enc = tsenc.Encoder(256)
    sys.settrace(tracer)
    try:
        blocks = [enc.encode_decimal(t, c, 0) for t, c in series]
    finally:
        sys.settrace(None)
    assert not seen, seen[:10]
    for (t, c), block in zip(series, blocks, strict=True):
        assert block == tscodec.Codec(256).encode_decimal(t, c, 0)
        t2, v2 = native.decode(block)
        assert t2.tolist() == t
        assert v2.tolist() == c


MP_COUNTS_DRIVER = """
import sys
from array import array
sys.path.insert(0, sys.argv[1])
import tscodec
codec = tscodec.Codec(256)
for name in sys.argv[2:]:
    with open(sys.argv[1] + '/' + name + '.in', 'rb') as f:
        raw = f.read()
    e = raw[0]
    n = (len(raw) - 1) // 16
    ts = array('q', raw[1:1 + 8 * n])
    counts = array('q', raw[1 + 8 * n:])
    block = codec.encode_decimal(ts, counts, e)
    with open(sys.argv[1] + '/' + name + '.out', 'wb') as f:
        f.write(block)
"""


def test_encode_decimal_under_micropython(tmp_path):
    # The temperature series, and the series at the small-int path's edges, where the unix
    # port's small ints (to 2**62) and long ints meet as well.
    micropython, mpy_cross = BIN / "micropython", BIN / "mpy-cross"
    if not micropython.exists() or not mpy_cross.exists():
        pytest.skip("MicroPython unix port not installed (pip install '.[dev]')")
    _compile_reference(mpy_cross, tmp_path)
    ts, counts = _temperature_counts()
    cases = {"temperature": (ts, counts, 2, True), **EDGES}
    for name, (ts, counts, e, _) in cases.items():
        data = bytes([e]) + ts.astype("<i8").tobytes() + counts.astype("<i8").tobytes()
        (tmp_path / f"{name}.in").write_bytes(data)
    (tmp_path / "driver.py").write_text(MP_COUNTS_DRIVER)
    proc = subprocess.run(
        [micropython, "-X", "heapsize=64K", tmp_path / "driver.py", tmp_path, *sorted(cases)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, (ts, counts, e, decimal) in cases.items():
        block = (tmp_path / f"{name}.out").read_bytes()
        t2, v2 = native.decode(block)
        assert t2.tolist() == ts.tolist(), name
        assert bits(v2) == bits(counts / 10**e), name
        if decimal:
            assert block == native.encode(ts, counts / 10**e), name
