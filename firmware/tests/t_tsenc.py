"""tsenc.py, the device's block encoder, under the 64 KB heap: the heap its import and an
Encoder(64) take (METRIC lines), and the same bytes as the reference codec (tscodec, which
tests/native hold to the C encoder) on a few series. tsenc is imported inside the tests, not
here: the first test measures its import."""

import gc
import sys
from array import array

import micropython
import mptest
from mptest import check, metric


def test_heap_cost_of_import_and_encoder():
    # The board's cost of the encoder: its module (bytecode stays in ROMFS; function objects,
    # globals and constants do not) and the buffers of a 64-point Encoder.
    sys.modules.pop("tsenc", None)
    gc.collect()
    before = gc.mem_alloc()
    import tsenc

    gc.collect()
    imported = gc.mem_alloc()
    enc = tsenc.Encoder(64)
    gc.collect()
    total = gc.mem_alloc() - before
    metric("tsenc_import_heap_bytes", imported - before)
    metric("tsenc_encoder64_heap_bytes", total - (imported - before))
    metric("tsenc_import_and_encoder64_heap_bytes", total)
    # Measured on the unix port (64-bit): 2.6 KB + 2.0 KB, where importing tscodec, which held
    # all of the codec before tsenc was split out of it, and a Codec(64) took 10.1 KB.
    check(total < 6 * 1024, "import tsenc + Encoder(64) took", total, "bytes")
    ts, counts = _series(64, 1000000, 0, 3, 1)
    enc.encode_decimal(ts, counts, 2)
    gc.collect()
    before = micropython.mem_total()
    block = enc.encode_decimal(ts, counts, 2)
    # the block itself, and the long ints of 64-bit timestamp arithmetic
    metric("tsenc_bytes_allocated_per_64_point_block", micropython.mem_total() - before)
    metric("tsenc_64_point_block_bytes", len(block))


def _series(n, step, jitter, walk, seed, t0=1767225600000000, c0=2137):
    # Timestamps (µs) every `step` ± jitter, and a random walk of counts: the same on every port.
    ts = array("q", bytes(8 * n))
    counts = array("q", bytes(8 * n))
    x = seed
    c = c0
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        ts[i] = t0 + step * i + (x % (2 * jitter + 1) - jitter if jitter else 0)
        c += x % (2 * walk + 1) - walk
        counts[i] = c
    return ts, counts


def _cases():
    # (name, timestamps, counts, e, float encoder picks decimal mode with this e)
    ts, counts = _series(64, 1000000, 0, 3, 1)
    yield "steady_temperature", ts, counts, 2, True
    ts, counts = _series(256, 1000000, 40000, 9, 2, c0=5500)
    for i in range(256 // 3, 256):
        ts[i] += 3600000000  # a gap: patches in the timestamp frames
    yield "jitter_gap_humidity_256", ts, counts, 1, True
    ts, counts = _series(150, -2000000, 5, 1 << 40, 3, c0=0)
    counts[7] = (1 << 53) - 1
    counts[8] = 1 - (1 << 53)
    yield "backwards_wide_counts", ts, counts, 18, True
    ts = array("q", [-(1 << 63), (1 << 63) - 1, 0, -1, 1, 1 << 62])
    counts = array("q", [0, -1, 1, 1 << 52, -(1 << 52), 7])
    yield "extreme_timestamps", ts, counts, 0, False
    yield "single", array("q", [5]), array("q", [-3]), 3, True
    yield "empty", array("q"), array("q"), 2, False


def test_same_bytes_as_the_reference_codec():
    from tscodec import Codec
    from tsenc import Encoder

    enc = Encoder(256)
    codec = Codec(256)
    for name, ts, counts, e, as_float in _cases():
        block = enc.encode_decimal(ts, counts, e)
        check(block == codec.encode_decimal(ts, counts, e), name, "differs from tscodec")
        scale = float(10**e)
        if as_float:  # the unix port's floats are binary64, as encode() needs
            values = array("d", bytes(8 * len(counts)))  # not a list of boxed floats
            for i in range(len(counts)):
                values[i] = counts[i] / scale
            check(block == codec.encode(ts, values), name, "differs from encode()")
            del values
        t2, v2 = codec.decode(block)
        check(len(t2) == len(ts), name, "count")
        for i in range(len(ts)):
            check(t2[i] == ts[i] and v2[i] == counts[i] / scale, name, "point", i)
        gc.collect()


def test_validates_its_input():
    from tsenc import Encoder, decimal_bound, encode_bound

    enc = Encoder(4)
    for ts, counts, e in (
        ([1, 2], [1], 0),  # lengths differ
        ([1], [1], 19),  # e above 18
        ([1], [1 << 53], 0),  # |count| not below 2**53
        ([1], [-(1 << 53)], 0),
        ([1] * 5, [1] * 5, 0),  # more points than the Encoder holds
    ):
        try:
            enc.encode_decimal(ts, counts, e)
        except ValueError:
            continue
        check(False, "accepted", ts, counts, e)
    # refused calls leave nothing behind
    block = enc.encode_decimal([1, 2, 3, 4], [5, 6, 7, 8], 0)
    check(block == Encoder(4).encode_decimal([1, 2, 3, 4], [5, 6, 7, 8], 0), "after refusals")
    for n in (0, 1, 127, 128, 129, 1000):
        check(decimal_bound(n) <= encode_bound(n), n)


mptest.run(
    [
        test_heap_cost_of_import_and_encoder,
        test_same_bytes_as_the_reference_codec,
        test_validates_its_input,
    ]
)
