"""The C codec through native.encode/decode: round trips, buffers, errors, hostile input."""

from __future__ import annotations

import array
import random
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_series import bits, named_series, v1_blocks

import native

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ANY_DOUBLE = st.integers(min_value=0, max_value=2**64 - 1).map(
    lambda u: struct.unpack("<d", struct.pack("<Q", u))[0]
)
DECIMAL = st.integers(min_value=-(10**9), max_value=10**9).flatmap(
    lambda k: st.integers(min_value=0, max_value=6).map(lambda e: k / 10**e)
)


def roundtrip(ts, vs):
    ts = np.asarray(ts, dtype=np.int64)
    vs = np.asarray(vs, dtype=np.float64)
    block = native.encode(ts, vs)
    t2, v2 = native.decode(block)
    assert t2.dtype == np.int64 and v2.dtype == np.float64
    assert t2.tolist() == ts.tolist()
    assert bits(v2) == bits(vs)
    return block


@pytest.mark.parametrize("name", sorted(named_series()))
def test_named_series_round_trip(name):
    ts, vs = named_series(1000)[name]
    roundtrip(ts, vs)


def test_modes_are_chosen_by_size():
    series = named_series(1000)
    ts, temp = series["steady_temp"]
    assert native.encode(ts, temp)[1] & 3 == 1  # decimal
    assert native.encode(ts, series["uniform_random"][1])[1] == 0  # XOR
    adc = series["gaps_vibration_adc"][1]  # counts x 3.3/4096: not decimal
    block = native.encode(ts, adc)
    assert block[1] & 3 == 2  # scaled
    assert len(block) < len(native.encode(ts, series["uniform_random"][1])) / 4


def test_scaled_mode_finds_the_adc_factor():
    counts = np.random.default_rng(4).integers(-2048, 2048, 5000)
    ts = np.arange(5000, dtype=np.int64)
    for scale in (3.3 / 4096, 0.001, 9.81 / 16384, 1e-7 * 3):
        block = native.encode(ts, counts * scale)
        assert block[1] & 3 == 2, scale
        # ~12 bits per value (4096 levels), never the 64 of a raw double
        assert len(block) < 5000 * 13 / 8 + 200, scale


def test_zero_runs_cost_one_bit_per_item_in_sparse_frames():
    # Hourly irradiance: 12 zero hours a night, so no 128-item frame is all zero. A sparse
    # frame (format 2) packs only the non-zero items behind a 1-bit-per-item bitmap.
    hours = np.arange(24 * 64)
    day = np.clip(np.sin((hours % 24 - 6) / 12 * np.pi), 0, None)
    ghi = np.round(800 * day + np.random.default_rng(3).integers(0, 40, hours.size) * (day > 0))
    ts = 1_767_225_600_000 + 3_600_000 * hours.astype(np.int64)
    block = roundtrip(ts, ghi)
    deltas = np.diff(np.concatenate([[0], ghi]))
    nonzero = int(np.count_nonzero(deltas))
    # ~10 bits per non-zero delta (|delta| < 512), 1 bit per item, against 11 bits for every
    # item in plain frames.
    assert len(block) * 8 < nonzero * 10 + hours.size + 300
    assert len(block) * 8 < hours.size * 11 * 0.75


def test_format_1_blocks_still_decode():
    series = named_series(300, seed=11)
    blocks = v1_blocks()
    assert sorted(blocks) == sorted(series)
    for name, block in blocks.items():
        assert block[0] == 1
        ts, vs = series[name]
        t2, v2 = native.decode(block)
        assert t2.tolist() == ts.tolist(), name
        assert bits(v2) == bits(vs), name
        assert native.encode(ts, vs)[0] == native.FORMAT_VERSION == 2


def test_steady_timestamps_cost_well_under_one_bit_per_point():
    ts = 1_767_225_600_000 + 1000 * np.arange(100_000, dtype=np.int64)
    zeros = np.zeros(100_000)
    # Each stream costs one width-0 frame byte per 128 points: 1/16 bit per point each.
    block = native.encode(ts, zeros)
    assert len(block) * 8 / 100_000 < 2 * (1 / 16) + 0.01


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(I64, ANY_DOUBLE), max_size=300))
def test_round_trip_any_int64_and_any_double(points):
    roundtrip([p[0] for p in points], [p[1] for p in points])


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=-(2**62), max_value=2**62),
    st.lists(st.tuples(st.integers(-3, 3), DECIMAL), min_size=1, max_size=400),
)
def test_round_trip_sensor_like_series(t0, steps):
    ts, t, period = [], t0, 1000
    for jitter, _ in steps:
        t += period + jitter
        ts.append(t)
    roundtrip(ts, [s[1] for s in steps])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 5e-324, 1.5]),
        max_size=200,
    ),
    st.sampled_from([0, 1, -(2**63), 2**63 - 1]),
)
def test_round_trip_adversarial_values_and_constant_timestamps(values, t):
    roundtrip([t] * len(values), values)


def test_accepts_every_buffer_kind_without_changing_result():
    ts, vs = named_series(300)["jitter_humid"]
    want = native.encode(ts, vs)
    assert native.encode(ts.tolist(), vs.tolist()) == want
    assert native.encode(array.array("q", ts.tolist()), array.array("d", vs.tolist())) == want
    assert native.encode(memoryview(ts), memoryview(vs)) == want
    doubled = np.repeat(ts, 2)[::2]  # not contiguous: converted, same result
    assert native.encode(doubled, vs) == want
    for buf in (want, bytearray(want), memoryview(want), array.array("B", want)):
        t2, _v2 = native.decode(buf)
        assert t2.tolist() == ts.tolist()
    padded = b"xx" + want
    t2, _ = native.decode(memoryview(padded)[2:])
    assert t2.tolist() == ts.tolist()
    strided = np.frombuffer(bytes(2 * len(want)), np.uint8).copy()
    strided[::2] = np.frombuffer(want, np.uint8)
    t2, _ = native.decode(strided[::2])  # not contiguous: copied, same result
    assert t2.tolist() == ts.tolist()


def test_zero_copy_for_matching_buffers():
    ts, vs = named_series(300)["jitter_humid"]
    # from_buffer keeps a reference to the very object it was given: no conversion happened
    ptr, n = native._typed(ts, native._INT64_FORMATS, np.int64, "iu", "timestamps")
    assert n == 300 and native.ffi.cast("intptr_t", ptr) == ts.ctypes.data
    ptr, _ = native._typed(vs, native._FLOAT64_FORMATS, np.float64, "iuf", "values")
    assert native.ffi.cast("intptr_t", ptr) == vs.ctypes.data


def test_lossless_conversions_of_other_types_are_accepted():
    ts, vs = named_series(300)["jitter_humid"]
    want = native.encode(ts, vs)
    assert native.encode(ts.astype(">i8"), vs.astype(">f8")) == want
    small = np.arange(10, dtype=np.uint32)
    assert native.encode(small, small.astype(np.float32)) == native.encode(
        np.arange(10), np.arange(10.0)
    )
    assert native.encode([], []) == native.encode(np.zeros(0, np.int64), np.zeros(0))


def test_encode_validates_arguments():
    with pytest.raises(ValueError, match="timestamps but"):
        native.encode([1, 2], [1.0])
    with pytest.raises(TypeError):
        native.encode("abc", [1.0, 2.0, 3.0])
    with pytest.raises(TypeError):
        native.encode([1.5], [1.0])  # a float timestamp would be truncated
    with pytest.raises(TypeError):
        native.encode(np.array([2**63], dtype=np.uint64), [1.0])  # beyond int64
    with pytest.raises(TypeError):
        native.encode([2**64], [1.0])
    with pytest.raises(TypeError):
        native.encode([1], ["x"])
    with pytest.raises(ValueError):
        native.encode(np.zeros((2, 2), dtype=np.int64), np.zeros(4))
    n = native.MAX_POINTS + 1
    with pytest.raises(ValueError, match="at most"):
        native.encode(np.zeros(n, dtype=np.int64), np.zeros(n))


ONE_POINT = b"\x01\x01\x01\x00\x00\x00\x00"  # version 1, decimal, 1 point, t0 = 0
ONE_POINT_SCALED = b"\x01\x02\x01\x00\x00\x00\x00"  # the same in scaled mode
# Format 2: version, mode byte (decimal, order 0, e = 0), varint n = 3, t0 = 0, t1 - t0 = 0;
# then one timestamp frame of 1 item.
THREE_POINTS = b"\x02\x01\x03\x00\x00"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (b"", "truncated"),
        (b"\x03\x01\x00\x00\x00\x00", "version"),
        (b"\x00\x01\x00\x00\x00\x00", "version"),
        (b"\x01\x03\x00\x00\x00\x00", "mode"),  # mode 3
        (b"\x01\x09\x00\x00\x00\x00\x00\x00\x00", "mode"),  # reserved bit 3
        (b"\x01\x04\x00\x00\x00\x00", "mode"),  # XOR has no order bit
        (b"\x01\x01" + struct.pack("<I", native.MAX_POINTS + 1) + bytes(20_000), "count"),
        (b"\x01\x00" + struct.pack("<I", 1000), "count"),
        (b"\x01\x00\x00\x00\x00\x00\x00", "trailing"),
        (ONE_POINT + b"\x13\x00\x00", "mode"),  # 10^19
        (ONE_POINT + b"\x02\x00\x41", "frame"),  # width 65
        (ONE_POINT + b"\x02\x00\x80\x00\x00\x00\x00", "frame"),  # exception width 0
        (ONE_POINT + b"\x02\x02\x00", "exception"),  # 2 exceptions for 1 point
        (ONE_POINT + b"\x02\x01\x00" + bytes(11), "truncated"),
        (ONE_POINT + b"\x02\x01\x00" + bytes(13), "trailing"),
        (ONE_POINT + b"\x02\x01\x00\x05" + bytes(11), "exception"),  # position 5 of 1
        (ONE_POINT + b"\x02\x80\x00\x00", "truncated"),  # overlong varint
        (ONE_POINT[:-1] + b"\xff" * 11 + b"\x02\x00\x00", "truncated"),  # varint > 64 bits
        (ONE_POINT_SCALED + struct.pack("<d", 0.0) + bytes(2), "mode"),
        (ONE_POINT_SCALED + struct.pack("<d", -1.0) + bytes(2), "mode"),
        (ONE_POINT_SCALED + struct.pack("<d", float("nan")) + bytes(2), "mode"),
        (ONE_POINT_SCALED + struct.pack("<d", 0.5) + bytes(2), None),  # valid: one 0.0
        (ONE_POINT + b"\x02\x00\x00", None),  # valid: one 0.0
        (ONE_POINT + b"\x02\x00\x41", "frame"),  # no sparse frames in format 1
        (b"\x01\x09\x01\x00\x00\x00\x00\x00\x00\x00\x00", "mode"),  # format 1: no e in bits 3..7
        # format 2
        (b"\x02", "truncated"),
        (b"\x02\x01", "truncated"),
        (b"\x02\x01\x80\x00\x00\x00\x00", "truncated"),  # overlong count varint
        (b"\x02\x01\xc2\x84\x3d" + bytes(30), "count"),  # 1,000,002 points
        (b"\x02\x01\x01\x00\x00", "count"),  # 1 point needs t0, nexc, k[0]
        (b"\x02\x99\x01\x00\x00\x00", "mode"),  # e = 19
        (b"\x02\x0a\x01\x00" + struct.pack("<d", 0.5) + b"\x00\x00", "mode"),  # e in scaled
        (b"\x02\x08\x00", "mode"),  # e in XOR mode
        (b"\x02\x91\x01\x00\x00\x00", "1e-18"),  # valid: e = 18, one 0.0
        (b"\x02\x01\x01\x00\x00\x00", None),  # valid: one 0.0
        (THREE_POINTS + b"\x41\x00" + b"\x00\x00\x00", None),  # sparse frame, no items set
        (THREE_POINTS + b"\x41\x01" + b"\x00\x00\x00", None),  # 1 item set, w = 0: item 1
        (THREE_POINTS + b"\x41" + b"\x00\x00\x00", "truncated"),  # the bitmap takes a byte
        (THREE_POINTS + b"\x41", "count"),
        (THREE_POINTS + b"\xc1\x00\x01\x00" + b"\x00\x00\x00", "frame"),  # patch, 0 items
        (THREE_POINTS + b"\x7f\x01" + bytes(8) + b"\x00\x00\x00", None),  # w = 62
        (THREE_POINTS + b"\x7f\x01" + bytes(7) + b"\x00\x00\x00", "truncated"),
        (THREE_POINTS + b"\x41\x02" + b"\x00\x00\x00", None),  # padding bits are not read
    ],
)
def test_hostile_headers_raise_codec_error(block, message):
    if message is None or message == "1e-18":  # control cases: valid blocks of zeros
        assert not native.decode(block)[1].any()
        return
    with pytest.raises(native.CodecError, match=message):
        native.decode(block)


def test_codec_error_is_a_value_error():
    assert issubclass(native.CodecError, ValueError)


def _blocks():
    series = named_series(300, seed=11)
    blocks = {k: native.encode(*series[k]) for k in sorted(series) if len(series[k][0])}
    # and what devices that predate format 2 send
    blocks |= {f"v1_{k}": b for k, b in v1_blocks().items() if k != "empty"}
    return blocks


def _declared(block) -> tuple[int, int]:
    """(the count a block's header declares, the bit just past its count field)."""
    if block[0] == 1:
        return struct.unpack_from("<I", block, 2)[0], 48
    n = shift = 0
    for i in range(2, min(len(block), 12)):
        n |= (block[i] & 0x7F) << shift
        shift += 7
        if not block[i] & 0x80:
            return n, 8 * (i + 1)
    return -1, 0


@pytest.mark.parametrize(("name", "block"), sorted(_blocks().items()))
def test_every_truncation_is_rejected(name, block):
    for cut in range(len(block)):
        with pytest.raises(native.CodecError):
            native.decode(block[:cut])


@pytest.mark.parametrize(("name", "block"), sorted(_blocks().items()))
def test_every_single_bit_flip_is_rejected_or_keeps_the_count(name, block):
    n, _ = _declared(block)
    buf = bytearray(block)
    for bit in range(len(block) * 8):
        buf[bit >> 3] ^= 1 << (bit & 7)
        try:
            t2, v2 = native.decode(buf)
        except native.CodecError:
            pass
        else:
            # A flip that leaves a valid block may change data, but the arrays always have
            # the declared count, which only a flip in the count field changes.
            declared, count_end = _declared(buf)
            assert len(t2) == len(v2) == declared
            assert declared == n or 16 <= bit < max(count_end, _declared(block)[1])
        buf[bit >> 3] ^= 1 << (bit & 7)


def test_fuzz_python_entry_never_crashes():
    # The 100,000-input pass runs in C under ASan/UBSan (test_native_sanitizers); this one
    # goes through the Python wrapper, which must only ever raise CodecError.
    rnd = random.Random(5)
    seeds = list(_blocks().values())
    for _ in range(20_000):
        block = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randrange(1, 6)):
            op = rnd.randrange(3)
            if op == 0 and block:
                block[rnd.randrange(len(block))] = rnd.randrange(256)
            elif op == 1:
                del block[rnd.randrange(len(block) + 1) :]
            else:
                block += rnd.randbytes(rnd.randrange(8))
        try:
            t2, v2 = native.decode(block)
        except native.CodecError:
            continue
        assert len(t2) == len(v2) == _declared(block)[0]
