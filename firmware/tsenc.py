"""The device's block encoder (native/SPEC.md): decimal-mode blocks from integer readings.

    enc = Encoder(256)                                  # buffers for 256-point blocks, once
    block = enc.encode_decimal(timestamps, counts, 2)   # the values counts[i] / 10**2

This is the part of the reference codec (tscodec.py) that a sensor board runs, and nothing
else. The boards' ports (ESP32, RP2040) have single-precision floats, so the firmware only
writes decimal blocks from integers; and every function, class and global a module holds takes
heap on import, even when its bytecode runs in place from ROMFS, on a board with 64 KB of it.
So encode() with its choice between XOR, decimal and scaled modes, decode() and the block
checks live in tscodec.py, which builds on this module (its Codec is an Encoder) for the
tests and the unix port. No code is in both. The bytes are tscodec's, which tests/native
hold to the C encoder (firmware/tests/t_tsenc.py checks both, and measures the heap).

Memory: an Encoder owns its buffers, sized once for `max_points` (8 bytes a point, and an
output buffer of decimal_bound(max_points)); encode_decimal allocates only the bytes it
returns. 64-bit quantities (timestamps, zigzag patterns) are long ints on the device: that
allocation is unavoidable in pure Python and bounded by the block size.
"""

import struct
from array import array

try:
    from micropython import const
except ImportError:  # CPython: tests/native load this module through tscodec

    def const(x):  # type: ignore[misc]  # the stubs' const is generic
        return x


FORMAT_VERSION = const(1)
MAX_POINTS = const(1000000)
MODE_DECIMAL = const(1)
HEADER = const(6)  # version, mode, point count
FRAME = const(128)  # items per frame
MAX_EXP = const(18)  # largest decimal exponent
# Long ints, so not consts: a const too wide for a small int is a heap object in each module
# that names it. These are made once, here; tscodec imports them.
_M64 = (1 << 64) - 1
_EXACT_LIMIT = 1 << 53  # |n| below it converts to float exactly


def _bitlen(v):
    n = 0
    while v >= 0x10000:
        v >>= 16
        n += 16
    while v:
        v >>= 1
        n += 1
    return n


def _zigzag(u):  # u: 64-bit two's complement pattern
    return ((u << 1) & _M64) ^ (_M64 if u >> 63 else 0)


def _put_varint(buf, pos, v):
    # LEB128: 7 bits per byte, least significant group first, high bit = more follow.
    while v >= 0x80:
        buf[pos] = (v & 0x7F) | 0x80
        v >>= 7
        pos += 1
    buf[pos] = v
    return pos + 1


def _choose_width(items, s, flen, hist, lens):
    # (w, exceptions, maxl, bytes) of the canonical frame: widest first, narrower only if
    # strictly smaller (SPEC.md: Frames). Fills hist (65 counters) and lens (flen bit lengths).
    for i in range(65):
        hist[i] = 0
    for i in range(flen):
        b = _bitlen(items[s + i])
        lens[i] = b
        hist[b] += 1
    maxl = 64
    while maxl and not hist[maxl]:
        maxl -= 1
    best_w = maxl
    best_cost = 1 + (flen * maxl + 7) // 8
    best_cnt = 0
    cnt = 0
    for w in range(maxl - 1, -1, -1):
        cnt += hist[w + 1]
        c = 1 + (flen * w + 7) // 8 + 2 + cnt + (cnt * (maxl - w) + 7) // 8
        if c < best_cost:
            best_cost = c
            best_w = w
            best_cnt = cnt
    return best_w, best_cnt, maxl, best_cost


def encode_bound(n):
    """Bytes any n-point block can need (the C encoder's rt_encode_bound)."""
    frames = n * 8 + (n + 127) // 128
    return HEADER + 10 + frames + 8 + 10 + frames + 12 * n + 16


def decimal_bound(n):
    """Bytes any n-point block from encode_decimal can need: no scale, no exceptions. A frame
    of f items takes at most 1 + 8 * f bytes (the widest width, no patches, is a candidate)."""
    return HEADER + 10 + 2 + 2 * (n * 8 + (n + 127) // 128)


class Encoder:
    """Decimal-mode encoder with buffers for blocks of up to `max_points` points."""

    def __init__(self, max_points=256):
        if not 0 <= max_points <= MAX_POINTS:
            raise ValueError("max_points out of range")
        self.max_points = max_points
        # Typed arrays, not lists: no boxed ints stay on the heap between calls to fragment
        # it (a 64 KB heap has little room for that).
        self._items = array("Q", bytes(8 * max_points))
        self._hist = bytearray(65)  # a frame's bit-length histogram: counts <= FRAME
        self._lens = bytearray(min(FRAME, max_points))  # a frame's item bit lengths
        self._buf = bytearray(self._bound(max_points))
        # The bit writer's state (_put): next byte of _buf, bits not yet written, their count.
        self._pos = 0
        self._acc = 0
        self._fill = 0

    def _bound(self, n):
        # The output buffer's size (tscodec's Codec needs room for every mode).
        return decimal_bound(n)

    def encode_decimal(self, timestamps, counts, e):
        """A decimal-mode block of the values counts[i] / 10**e, from integers only: for
        ports whose floats are single precision, where tscodec's encode() cannot reproduce
        binary64 arithmetic. native.decode gives back exactly counts[i] / 10**e as binary64.
        The bytes equal tscodec's encode() (and the C encoder's) for those values whenever
        that encoder would choose decimal mode with this e; otherwise they are another valid
        encoding."""
        n = len(timestamps)
        if n != len(counts):
            raise ValueError("timestamps and counts differ in length")
        if not 0 <= e <= MAX_EXP:
            raise ValueError("e must be in 0..18")
        for i in range(n):
            if not -_EXACT_LIMIT < counts[i] < _EXACT_LIMIT:
                raise ValueError("counts must be integers below 2**53 in magnitude")
        pos = self._encode_timestamps(timestamps, n)
        buf = self._buf
        buf[1] = MODE_DECIMAL | self._put_ints(counts, n) << 2
        buf[pos] = e
        buf[pos + 1] = 0  # the exception count, a varint: integers have none
        end = self._frames_encode(n, pos + 2)
        return bytes(memoryview(buf)[:end])

    def _encode_timestamps(self, timestamps, n):
        # Header and timestamp section; returns where the value section starts.
        if n > self.max_points:
            raise ValueError("more points than this encoder was sized for")
        buf = self._buf
        items = self._items
        buf[0] = FORMAT_VERSION
        struct.pack_into("<I", buf, 2, n)
        # t0 as a varint, then t1 - t0 and the deltas of deltas (mod 2^64).
        vals = HEADER
        if n:
            prev = timestamps[0] & _M64
            vals = _put_varint(buf, vals, _zigzag(prev))
            delta = 0
            for i in range(1, n):
                t = timestamps[i] & _M64
                d = (t - prev) & _M64
                items[i - 1] = _zigzag(d if i == 1 else (d - delta) & _M64)
                delta = d
                prev = t
            vals = self._frames_encode(n - 1, vals)
        return vals

    def _put_ints(self, ints, n):
        # Fills _items with the integers ints[:n] (or their 64-bit patterns), zigzagged as
        # they are (order 0) or as deltas (order 1), whichever has fewer significant bits;
        # returns the order. `ints` may be _items itself. Read from the caller's array, not
        # from _items: an array("Q") item is a long int on every read.
        items = self._items
        prev = 0
        bits0 = 0
        bits1 = 0
        for i in range(n):
            k = ints[i]
            bits0 += _bitlen(_zigzag(k & _M64))
            bits1 += _bitlen(_zigzag((k - prev) & _M64))
            items[i] = k & _M64
            prev = k
        order = 0 if bits0 < bits1 else 1
        for i in range(n - 1, -1, -1):
            items[i] = _zigzag((items[i] - items[i - 1]) & _M64 if order and i else items[i])
        return order

    def _frames_encode(self, n, pos):
        # _items[:n] as frames into _buf from pos on; returns where they end.
        items = self._items
        buf = self._buf
        lens = self._lens
        for s in range(0, n, FRAME):
            flen = min(FRAME, n - s)
            w, best_cnt, maxl, _ = _choose_width(items, s, flen, self._hist, lens)
            ew = maxl - w
            buf[pos] = w | (0x80 if best_cnt else 0)
            pos += 1
            if best_cnt:
                buf[pos] = best_cnt - 1
                buf[pos + 1] = ew
                pos += 2
            self._pos = pos
            m = (1 << w) - 1
            if w:
                for i in range(flen):
                    self._put(items[s + i] & m, w)
            pos = self._flush()
            if best_cnt:
                for i in range(flen):
                    if lens[i] > w:
                        buf[pos] = i
                        pos += 1
                self._pos = pos
                for i in range(flen):
                    if lens[i] > w:
                        self._put(items[s + i] >> w, ew)
                pos = self._flush()
        return pos

    def _put(self, v, n):
        # LSB-first bit writer into _buf (SPEC.md: Bits): v < 2**n in n bits, at _pos on.
        self._acc |= v << self._fill
        self._fill += n
        buf = self._buf
        while self._fill >= 8:
            buf[self._pos] = self._acc & 0xFF
            self._pos += 1
            self._acc >>= 8
            self._fill -= 8

    def _flush(self):
        # The last partial byte, zero-padded; returns the position after it.
        if self._fill:
            self._buf[self._pos] = self._acc & 0xFF
            self._pos += 1
        self._acc = 0
        self._fill = 0
        return self._pos
