"""tsenc.py, the device's block encoder, under the 64 KB heap: the heap its import and an
Encoder(64) take, what an encode allocates and how long it takes (METRIC lines), and the same
bytes as the reference codec (tscodec, which tests/native hold to the C encoder) on a few
series, some of them at the edges of the encoder's small-int path. tsenc is imported inside
the tests, not here: the first test measures its import."""

import gc
import sys
import time
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
    # the block itself, and the long ints that reading array("q") items makes (~76 bytes a
    # point; test_encode_allocates_next_to_nothing_per_point has the encoder's own share)
    metric("tsenc_bytes_allocated_per_64_point_block", micropython.mem_total() - before)
    metric("tsenc_64_point_block_bytes", len(block))


def _zeros(typecode, n):
    return array(typecode, bytes((8 if typecode == "q" else 4) * n))


def _small_ints(a):
    # a list of a's items: array("q") gives long ints even for small values; adding 0 makes
    # small ints of those (MicroPython), so the encoder takes its small-int paths on them
    out = [0] * len(a)
    for i in range(len(a)):
        out[i] = a[i] + 0
    return out


def _series(n, step, jitter, walk, seed, t0=1767225600000000, c0=2137, types="qq"):
    # Timestamps (µs) every `step` ± jitter, and a random walk of counts: the same on every port.
    ts = _zeros(types[0], n)
    counts = _zeros(types[1], n)
    x = seed
    c = c0
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        ts[i] = t0 + step * i + (x % (2 * jitter + 1) - jitter if jitter else 0)
        c += x % (2 * walk + 1) - walk
        counts[i] = c
    return ts, counts


def test_encode_allocates_next_to_nothing_per_point():
    # A window of a temperature sensor: µs offsets from the window's start every 1 s ± 2 ms,
    # counts of 0.01 °C around 2150. Allocation (the allocator's running total, so heap frames
    # freed on return count too) and time of one encode, for 64 and 256 points, from arrays
    # that give small ints ("i") and from the views of array("q") timestamps and array("i")
    # counts that firmware/batcher.py passes. Before the small-int paths: ~1.1 KB a point
    # either way, and 310 / 1220 µs (unix port, x86-64).
    from tsenc import Encoder

    enc = Encoder(256)
    per_point = {}
    for types in ("ii", "qi"):
        for n in (64, 256):
            ts, counts = _series(n, 1000000, 2000, 3, n, t0=0, c0=2150, types=types)
            if types == "qi":
                ts, counts = memoryview(ts), memoryview(counts)
            block = enc.encode_decimal(ts, counts, 2)
            gc.collect()
            before = micropython.mem_total()
            again = enc.encode_decimal(ts, counts, 2)
            grew = micropython.mem_total() - before
            check(again == block, types, n)
            best = 1 << 30
            for _ in range(5):
                t0 = time.ticks_us()
                enc.encode_decimal(ts, counts, 2)
                best = min(best, time.ticks_diff(time.ticks_us(), t0))
            tag = f"{n}_points_{types[0]}"
            metric(f"tsenc_alloc_bytes_{tag}", grew)
            metric(f"tsenc_alloc_bytes_per_point_{tag}", grew // n)
            metric(f"tsenc_encode_us_{tag}", best)
            metric(f"tsenc_block_bytes_{tag}", len(block))
            per_point[types, n] = grew / n
            ts = counts = block = again = None
            gc.collect()
    # Measured on the unix port: 22 and 7 bytes a point from "i" arrays, a fixed ~1.2 KB of
    # heap frames and the block (~2 bytes a point); ~76 bytes a point more from array("q").
    check(per_point["ii", 64] < 64, "bytes a point, 64 points:", per_point["ii", 64])
    check(per_point["ii", 256] < 16, "bytes a point, 256 points:", per_point["ii", 256])
    extra = (256 * per_point["ii", 256] - 64 * per_point["ii", 64]) / 192
    check(extra < 8, "each point past 64 took", extra, "bytes")
    check(per_point["qi", 64] < 128, "bytes a point from array('q'):", per_point["qi", 64])


_S = (1 << 29) - 1  # the widest value tsenc keeps on its small-int path


def _integrated(t0, d0, dds):
    # Timestamps from t0 whose first step is d0 and whose deltas of deltas are dds.
    ts = _zeros("q", len(dds) + 2)
    ts[0] = t0
    ts[1] = t0 + d0
    d = d0
    for i in range(len(dds)):
        d += dds[i]
        ts[i + 2] = ts[i + 1] + d
    return ts


def _sprinkled(n, c0):
    # Small counts with values at the edges of the small-int path and of 2**53 among them.
    counts = _zeros("q", n)
    for i in range(n):
        counts[i] = c0 + (i * 7) % 13 - 6
    edges = (_S, -_S, _S + 1, -_S - 1, 1 << 30, -(1 << 30), (1 << 53) - 1, 1 - (1 << 53))
    for j in range(len(edges)):
        counts[1 + j * (n - 2) // len(edges)] = edges[j]
    return counts


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
    # Deltas of deltas on both sides of the small-int path's edge, from offsets and from
    # negative timestamps; steps across 2**62 (the unix port's last small int); extremes.
    # tests/native/test_native_reference.py holds the same series to the C encoder.
    dds = (_S, -_S, _S + 1, -_S - 1, _S + 2, 1 << 30, -(1 << 30), (1 << 30) - 1, 0, 5)
    dds += (-(1 << 31), 1 << 31, 0, -(1 << 53), (1 << 53) - 1, 0)
    counts = _sprinkled(len(dds) + 2, 2150)
    yield "dd_edges", _integrated(0, 1000000, dds), counts, 2, True
    yield "dd_edges_negative", _integrated(-(1 << 40), -1000000, dds), counts, 2, True
    ts = _integrated((1 << 62) - 3000, 1000, (0, 0, 1, -1, 0, 0, 0))
    yield "across_2_62", ts, array("q", range(len(ts))), 1, True
    ts = array("q", [-(1 << 63), (1 << 63) - 1, -(1 << 63), 0, 1 << 62, -(1 << 62)])
    ts.extend(array("q", [1 << 29, -(1 << 29), _S, -_S, 1 << 30, -(1 << 30)]))
    yield "extreme_timestamps_2", ts, _zeros("q", len(ts)), 0, True
    # Counts at the same edges, among small ones (decimal mode, order 0 and 1) and alone (the
    # float encoder prefers XOR mode for those).
    ts, _ = _series(130, 1000000, 0, 0, 4, t0=0)
    yield "count_edges_130", ts, _sprinkled(130, 2150), 0, True
    yield "count_edges_130_e2", ts, _sprinkled(130, 2150), 2, True
    yield "count_edges_130_around_0", ts, _sprinkled(130, 0), 0, True
    yield "count_edges_64", ts[:64], _sprinkled(64, 2150), 0, True
    edges = (_S, -_S, _S + 1, -_S - 1, 1 << 30, -(1 << 30), (1 << 53) - 1, 1 - (1 << 53), 0, 1)
    yield "count_edges_alone", ts[: len(edges)], array("q", edges), 0, False
    alt = _zeros("q", 20)
    for i in range(20):
        alt[i] = (1 << 53) - 1 if i & 1 else 1 - (1 << 53)
    yield "count_alternating_2_53", ts[:20], alt, 0, False
    const53 = _zeros("q", 20)
    for i in range(20):
        const53[i] = (1 << 53) - 1
    yield "count_constant_2_53", ts[:20], const53, 0, True


def test_same_bytes_as_the_reference_codec():
    from tscodec import Codec
    from tsenc import Encoder

    enc = Encoder(256)
    codec = Codec(256)
    for name, ts, counts, e, as_float in _cases():
        block = enc.encode_decimal(ts, counts, e)
        check(block == codec.encode_decimal(ts, counts, e), name, "differs from tscodec")
        # small ints and long ints of the same values take different paths
        small = enc.encode_decimal(_small_ints(ts), _small_ints(counts), e)
        check(block == small, name, "differs from small ints")
        small = None
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
        test_encode_allocates_next_to_nothing_per_point,
        test_same_bytes_as_the_reference_codec,
        test_validates_its_input,
    ]
)
