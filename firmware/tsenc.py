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
output buffer of decimal_bound(max_points)). The format's arithmetic is modulo 2**64, on
patterns that are long ints in MicroPython: a heap object for every intermediate, ~1 KB a point
when this encoder computed that way. It computes on the signed ints instead, whose zigzag is
the pattern's while it is small: a delta of delta or a count (and its delta) within ±(2**29 - 1)
takes only small ints on every port (they end at 2**30 on the 32-bit ones, 2**62 on 64-bit),
its item fits 30 bits, and the bit writer's accumulator stays below 2**30. A wider value (a
timestamp step that changes by 2**29 µs, ~9 minutes, or more; a count or count step beyond
that range; a first timestamp beyond it) takes the 64-bit path, for itself alone; and on a
32-bit port a timestamp of 2**30 µs (~18 minutes) or more is a long int already. So for sensor
data encode_decimal leaves only the bytes it returns behind (and takes a few heap frames, freed
as it returns: MicroPython gives one to a function with more than 11 locals and stack slots);
firmware/tests/t_tsenc.py measures it.

Inputs: any sequences of ints. An item read from an array("q") or array("Q") (or a view of
one) is a new long int even when its value is small, and the first arithmetic on it allocates
again: ~76 bytes a point on the unix port. Arrays "i", "I", "l" and "h" give small ints.
"""

from array import array

try:
    from micropython import const
except ImportError:  # CPython: tests/native load this module through tscodec

    def const(x):  # type: ignore[misc]  # the stubs' const is generic
        return x


FORMAT_VERSION = const(2)  # the block format this writes (SPEC.md); tscodec reads 1 and 2
MAX_POINTS = const(1000000)
MODE_DECIMAL = const(1)
HEADER = const(6)  # most bytes before the timestamps: version, mode, point count
FRAME = const(128)  # items per frame
SPARSE = const(65)  # a sparse frame's header holds SPARSE + w, w <= MAX_SPARSE_W
MAX_SPARSE_W = const(62)
MAX_EXP = const(18)  # largest decimal exponent
# |x| <= _SMALL: zigzag(x) = (x << 1) ^ (x >> 63) <= _NARROW, every intermediate a small int on
# 32-bit ports too (small ints end at 2**30 there).
_SMALL = const(0x1FFFFFFF)
_NARROW = const(0x3FFFFFFF)
_INLINE = const(23)  # widths packed inline: (2**23 - 1) << 7 keeps the accumulator below 2**30
# Long ints, so not consts: a const too wide for a small int is a heap object in each module
# that names it. These are made once, here; tscodec imports them.
_M64 = (1 << 64) - 1
_EXACT_LIMIT = 1 << 53  # |n| below it converts to float exactly
_NIB = b"\x00\x01\x02\x02\x03\x03\x03\x03\x04\x04\x04\x04\x04\x04\x04\x04"  # of 0..15


def _bitlen(v):
    n = 0
    while v >= 0x100:
        v >>= 8
        n += 8
    if v >= 0x10:
        v >>= 4
        n += 4
    return n + _NIB[v]


def _zigzag(u):  # u: 64-bit two's complement pattern
    return ((u << 1) & _M64) ^ (_M64 if u >> 63 else 0)


def _zz(x):
    # zigzag of any int taken mod 2**64: without long ints when x is small
    if -_SMALL <= x <= _SMALL:
        return (x << 1) ^ (x >> 63)
    return _zigzag(x & _M64)


# Items (unsigned 64-bit) are kept as two arrays of 32-bit halves, lo and hi: an array("Q") item
# is a long int on every read, an array("I") item a small int whenever its value is one. Items
# up to _NARROW are written as lo[i] = item, hi[i] = 0 where they are made; others by _store.


def _store(lo, hi, i, v):
    h = v >> 32
    lo[i] = v - (h << 32)
    hi[i] = h


def _put_varint(buf, pos, v):
    # LEB128: 7 bits per byte, least significant group first, high bit = more follow.
    while v >= 0x80:
        buf[pos] = (v & 0x7F) | 0x80
        v >>= 7
        pos += 1
    buf[pos] = v
    return pos + 1


def encode_bound(n):
    """Bytes any n-point block can need (the C encoder's rt_encode_bound)."""
    frames = n * 8 + (n + 127) // 128
    return HEADER + 20 + frames + 8 + 20 + frames + 12 * n + 16


def decimal_bound(n):
    """Bytes any n-point block from encode_decimal can need: no scale, no exceptions; t0,
    t1 - t0 and k[0] varints. A frame of f items takes at most 1 + 8 * f bytes (the widest
    width, no patches, is a candidate; a sparse frame only if smaller)."""
    return HEADER + 20 + 1 + 10 + 2 * (n * 8 + (n + 127) // 128)


class Encoder:
    """Decimal-mode encoder with buffers for blocks of up to `max_points` points."""

    def __init__(self, max_points=256):
        if not 0 <= max_points <= MAX_POINTS:
            raise ValueError("max_points out of range")
        self.max_points = max_points
        # Typed arrays, not lists: no boxed ints stay on the heap between calls to fragment
        # it (a 64 KB heap has little room for that). The items, as halves (see _store).
        self._lo = array("I", bytes(4 * max_points))
        self._hi = array("I", bytes(4 * max_points))
        self._hist = bytearray(130)  # a frame's bit-length histograms: counts <= FRAME
        self._lens = bytearray(min(FRAME, max_points))  # a frame's item bit lengths
        self._buf = bytearray(self._bound(max_points))
        # The bit writer's state (_put): next byte of _buf, bits not yet written, their count.
        self._pos = 0
        self._acc = 0
        self._fill = 0
        # A frame's width choice (_width): width, widest item, exceptions.
        self._w = 0
        self._maxl = 0
        self._cnt = 0

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
        pos = self._encode_timestamps(timestamps, n)
        buf = self._buf
        buf[1] = MODE_DECIMAL | self._put_counts(counts, n) << 2 | e << 3
        buf[pos] = 0  # the exception count, a varint: integers have none
        end = self._first_and_frames(n, pos + 1)
        return bytes(memoryview(buf)[:end])

    def _first_and_frames(self, n, pos):
        # Item 0 as a varint, then items 1 .. n - 1 as frames; returns where they end.
        if not n:
            return pos
        h = self._hi[0]
        pos = _put_varint(self._buf, pos, self._lo[0] | h << 32 if h else self._lo[0])
        return self._frames_encode(1, n, pos)

    def _encode_timestamps(self, timestamps, n):
        # Header and timestamp section; returns where the value section starts.
        if n > self.max_points:
            raise ValueError("more points than this encoder was sized for")
        buf = self._buf
        lo = self._lo
        hi = self._hi
        buf[0] = FORMAT_VERSION
        # n, t0 and t1 - t0 as varints, then the deltas of deltas (mod 2^64). Computed on the
        # ints as they are (t1 - t0 is t1 - t0 - 0): congruent mod 2^64 to the format's
        # wrapping arithmetic, so their zigzags are the same. Item i - 1 is point i's.
        vals = _put_varint(buf, 2, n)
        if n:
            prev = timestamps[0]
            vals = _put_varint(buf, vals, _zz(prev))
            delta = 0
            for i in range(1, n):
                t = timestamps[i]
                d = t - prev
                x = d - delta
                delta = d
                prev = t
                if -_SMALL <= x <= _SMALL:
                    lo[i - 1] = (x << 1) ^ (x >> 63)
                    hi[i - 1] = 0
                else:
                    _store(lo, hi, i - 1, _zigzag(x & _M64))
            vals = self._first_and_frames(n - 1, vals)
        return vals

    def _put_counts(self, counts, n):
        # Items of the integers counts[:n] (|k| < 2**53, checked), zigzagged as deltas (order
        # 1) or, if that has more significant bits, as they are (order 0); returns the order.
        # Their differences fit 64 bits, so the zigzags need no wrapping.
        lo = self._lo
        hi = self._hi
        prev = 0
        bits0 = 0
        bits1 = 0
        for i in range(n):
            k = counts[i]
            if not -_SMALL <= k <= _SMALL and not -_EXACT_LIMIT < k < _EXACT_LIMIT:
                raise ValueError("counts must be integers below 2**53 in magnitude")
            d = k - prev  # the one operation on k, which may be a long int (see Inputs)
            prev += d
            bits0 += _bitlen((prev << 1) ^ (prev >> 63))
            z = (d << 1) ^ (d >> 63)
            bits1 += _bitlen(z)
            if z > _NARROW:
                _store(lo, hi, i, z)
            else:
                lo[i] = z
                hi[i] = 0
        return self._order(n, bits0, bits1)

    def _order(self, n, bits0, bits1):
        # The order (SPEC.md: Encoder choices) from the bits of each; the items hold order 1's
        # zigzags and become order 0's if that wins. (A small function: MicroPython gives
        # one with more than 11 locals and stack slots a heap frame on every call.)
        return 1 if bits0 >= bits1 else self._undelta(n)

    def _undelta(self, n):
        # Order 1's items (zigzags of deltas below 2**63 in magnitude) to order 0's; returns 0.
        lo = self._lo
        hi = self._hi
        k = 0
        for i in range(n):
            h = hi[i]
            z = lo[i] | h << 32 if h else lo[i]
            k += (z >> 1) ^ -(z & 1)
            z = (k << 1) ^ (k >> 63)
            if z > _NARROW:
                _store(lo, hi, i, z)
            else:
                lo[i] = z
                hi[i] = 0
        return 0

    def _frames_encode(self, first, end, pos):
        # Items first .. end - 1 as frames into _buf from pos on; returns where they end. A
        # sparse frame's items are packed in place: the items are spent.
        lo = self._lo
        hi = self._hi
        buf = self._buf
        lens = self._lens
        hist = self._hist
        for s in range(first, end, FRAME):
            flen = min(FRAME, end - s)
            # The canonical choice (SPEC.md: Frames) from two histograms: hist[0..64] of the
            # items' bit lengths, hist[65..129] of the bit lengths of x - 1 for the non-zero x
            # (a sparse frame's packed items: one less where x is a power of two).
            for i in range(130):
                hist[i] = 0
            for i in range(flen):
                h = hi[s + i]
                x = lo[s + i]
                if h:
                    b = 32 + _bitlen(h)
                    hist[SPARSE + b - (0 if x or h & (h - 1) else 1)] += 1
                else:
                    b = _bitlen(x)
                    if b:
                        hist[SPARSE + b - (0 if x & (x - 1) else 1)] += 1
                lens[i] = b
                hist[b] += 1
            best = self._width(0, flen)
            w = self._w
            maxl = self._maxl
            cnt = self._cnt
            plen = flen
            if hist[0]:  # a sparse frame: bitmap, then the non-zero items less one
                size = self._width(SPARSE, flen - hist[0]) + (flen + 7) // 8
                if self._maxl <= MAX_SPARSE_W and size < best:
                    w = self._w
                    maxl = self._maxl
                    cnt = self._cnt
                    plen = 0
            buf[pos] = (w if plen else SPARSE + w) | (0x80 if cnt else 0)
            pos += 1
            if cnt:
                buf[pos] = cnt - 1
                buf[pos + 1] = maxl - w
                pos += 2
            if not plen:
                for i in range((flen + 7) // 8):
                    buf[pos + i] = 0
                for i in range(flen):
                    h = hi[s + i]
                    x = lo[s + i]
                    if h or x:
                        buf[pos + (i >> 3)] |= 1 << (i & 7)
                        if not x:  # x - 1 borrows from the high half
                            h -= 1
                        x = (x - 1) & 0xFFFFFFFF
                        lo[s + plen] = x
                        hi[s + plen] = h
                        lens[plen] = 32 + _bitlen(h) if h else _bitlen(x)
                        plen += 1
                pos += (flen + 7) // 8
            # The low w bits of every item: lo's while w <= 32, lo and then hi's beyond.
            if 0 < w <= _INLINE:  # the common case, packed here without a call an item
                m = (1 << w) - 1
                acc = 0
                fill = 0
                for j in range(s, s + plen):
                    acc |= (lo[j] & m) << fill
                    fill += w
                    while fill >= 8:
                        buf[pos] = acc & 0xFF
                        acc >>= 8
                        pos += 1
                        fill -= 8
                if fill:
                    buf[pos] = acc
                    pos += 1
            elif w:
                self._pos = pos
                for j in range(s, s + plen):
                    if w > 32:
                        self._put(lo[j], 32)
                        self._put(hi[j], w - 32)
                    else:
                        self._put(lo[j], w)
                pos = self._flush()
            if cnt:
                for i in range(plen):
                    if lens[i] > w:
                        buf[pos] = i
                        pos += 1
                self._pos = pos
                ew = maxl - w  # the high bits, item >> w: from lo, then hi, or hi alone
                k = 32 - w if w < 32 else 0
                for i in range(plen):
                    if lens[i] > w:
                        if k:
                            self._put(lo[s + i] >> w, ew if ew < k else k)
                            if ew > k:
                                self._put(hi[s + i], ew - k)
                        else:
                            self._put(hi[s + i] >> (w - 32), ew)
                pos = self._flush()
        return pos

    def _width(self, base, flen):
        # The canonical width of flen items whose bit-length histogram is _hist[base:base + 65]:
        # the widest (maxl) first, a narrower one only if the frame is strictly smaller. Sets
        # _w, _maxl and _cnt (the exceptions); returns the frame's bytes, header included.
        hist = self._hist
        maxl = 64
        while maxl and not hist[base + maxl]:
            maxl -= 1
        self._w = maxl
        self._maxl = maxl
        self._cnt = 0
        best = 1 + (flen * maxl + 7) // 8
        c = 0
        for i in range(maxl - 1, -1, -1):
            c += hist[base + i + 1]
            size = 1 + (flen * i + 7) // 8 + 2 + c + (c * (maxl - i) + 7) // 8
            if size < best:
                best = size
                self._w = i
                self._cnt = c
        return best

    def _put(self, v, n):
        # LSB-first bit writer into _buf (SPEC.md: Bits): the low n bits of v >= 0, at _pos on.
        # Fed 16 bits at a time: the accumulator stays below 2**23, a small int on every port.
        buf = self._buf
        pos = self._pos
        acc = self._acc
        fill = self._fill
        while n > 16:
            acc |= (v & 0xFFFF) << fill
            buf[pos] = acc & 0xFF
            buf[pos + 1] = (acc >> 8) & 0xFF
            acc >>= 16
            pos += 2
            v >>= 16
            n -= 16
        acc |= (v & ((1 << n) - 1)) << fill
        fill += n
        while fill >= 8:
            buf[pos] = acc & 0xFF
            acc >>= 8
            pos += 1
            fill -= 8
        self._pos = pos
        self._acc = acc
        self._fill = fill

    def _flush(self):
        # The last partial byte, zero-padded; returns the position after it.
        if self._fill:
            self._buf[self._pos] = self._acc & 0xFF
            self._pos += 1
        self._acc = 0
        self._fill = 0
        return self._pos
