"""Reference Ringtail block codec (native/SPEC.md) in the Python subset MicroPython runs.

The device encodes its flash records with the encoder of this codec; the gateway and cloud
decode them with the C codec in native/, and the two must agree byte for byte (tests/native
prove it). Runs on CPython too.

    codec = Codec(256)                              # buffers for 256-point blocks, once
    block = codec.encode(timestamps, values)        # needs binary64 floats (unix port)
    block = codec.encode_decimal(timestamps, counts, 2)   # integers only: float32 ports
    ts, values = codec.decode(block)                # views of the codec's own arrays

Two modules, no code in both: tsenc.py is what the device imports (Encoder.encode_decimal and
what it needs: bit writer, varints, zigzag, frames, timestamps, encode_bound); this module
builds on it (Codec subclasses tsenc.Encoder) with encode() and its choice between XOR,
decimal and scaled modes, decode() and block_count(). Each function a module holds costs the
64 KB device heap on import, even from ROMFS, and the device never calls these.

Memory: a Codec owns its buffers, sized once for `max_points`; encode and decode reuse them
(measured in native/DESIGN.md), and decode reads frames into the Encoder's item arrays.
Timestamps and integers take tsenc's small-int paths when they are small; 64-bit quantities
(XOR patterns, float bits, decoded items) are long ints: that allocation is unavoidable in pure
Python and bounded by the block size.
"""

import struct
from array import array

from tsenc import (
    _EXACT_LIMIT,
    _M64,
    FORMAT_VERSION,
    MAX_POINTS,
    MODE_DECIMAL,
    Encoder,
    _bitlen,
    _put_varint,
    _store,
    _zz,
    encode_bound,
)
from tsenc import FRAME as _FRAME
from tsenc import MAX_EXP as _MAX_EXP
from tsenc import SPARSE as _SPARSE

try:
    from micropython import const
except ImportError:

    def const(x):  # type: ignore[misc]  # the stubs' const is generic
        return x


MODE_XOR = const(0)
MODE_SCALED = const(2)
_SAMPLE = const(32)
_SCALE_SAMPLE = const(256)
_SCALE_DIVISORS = const(4)
_NO_LEAD = const(65)
_TRAIL_THRESHOLD = const(6)

# float(10**e) is exact for e <= 22; float literals are not always correctly rounded on ports.
_POW10 = [float(10**e) for e in range(_MAX_EXP + 1)]
_LEAD_OF_CODE = (0, 8, 12, 16, 18, 20, 22, 24)


class CodecError(ValueError):
    pass


def _lead_round(clz):
    if clz < 8:
        return 0
    if clz < 12:
        return 8
    if clz < 16:
        return 12
    if clz >= 24:
        return 24
    return clz & ~1


def _lead_code(lead):
    return _LEAD_OF_CODE.index(lead)


def _ctz(v):  # v != 0
    n = 0
    while not v & 0xFFFF:
        v >>= 16
        n += 16
    while not v & 1:
        v >>= 1
        n += 1
    return n


def _load(lo, hi, i):
    # item i of the Encoder's halves (tsenc._store)
    h = hi[i]
    return lo[i] | h << 32 if h else lo[i]


def _unzigzag(z):
    return (z >> 1) ^ (_M64 if z & 1 else 0)


def _signed(u):
    return u - (1 << 64) if u >> 63 else u


class _Reader:
    # Reads past `end` raise: the stream is never trusted to stop by itself.
    def __init__(self, buf, pos, end):
        self.buf = buf
        self.pos = pos * 8
        self.end = end * 8

    def get(self, n):
        pos = self.pos
        if pos + n > self.end:
            raise CodecError("block truncated: a field runs past the end")
        buf = self.buf
        v = 0
        got = 0
        while got < n:
            byte = pos >> 3
            sh = pos & 7
            take = 8 - sh
            if take > n - got:
                take = n - got
            v |= ((buf[byte] >> sh) & ((1 << take) - 1)) << got
            got += take
            pos += take
        self.pos = pos
        return v


def _varint_len(v):
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def _get_varint(buf, pos, end):
    # (new pos, value) of a canonical varint: <= 10 bytes, fits 64 bits, no zero last group.
    x = 0
    for i in range(10):
        if pos + i >= end:
            break
        b = buf[pos + i]
        if i == 9 and (b & 0x7F) > 1:
            break
        x |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if i and not b:
                break
            return pos + i + 1, x
    raise CodecError("block truncated: a field runs past the end")


def _frame_decode(buf, pos, end, flen, lo, hi, start, sparse):
    # One frame of flen items into lo/hi from start on; sparse frames allowed in format 2.
    if pos >= end:
        raise CodecError("block truncated: a field runs past the end")
    h = buf[pos]
    pos += 1
    w = h & 0x7F
    bitmap = -1
    if sparse and w >= _SPARSE:
        w -= _SPARSE
        bitmap = 0
    elif w > 64:
        raise CodecError("malformed integer frame")
    cnt = 0
    ew = 0
    if h & 0x80:
        if end - pos < 2:
            raise CodecError("block truncated: a field runs past the end")
        cnt = buf[pos] + 1
        ew = buf[pos + 1]
        pos += 2
        if ew < 1 or w + ew > 64:
            raise CodecError("malformed integer frame")
    plen = flen
    if bitmap == 0:
        bitmap = pos
        pos += (flen + 7) // 8
        if pos > end:
            raise CodecError("block truncated: a field runs past the end")
        plen = 0
        for i in range(flen):
            plen += (buf[bitmap + (i >> 3)] >> (i & 7)) & 1
    if cnt > plen:
        raise CodecError("malformed integer frame")
    nb = (plen * w + 7) // 8
    if end - pos < nb:
        raise CodecError("block truncated: a field runs past the end")
    r = _Reader(buf, pos, pos + nb)
    for i in range(plen):
        _store(lo, hi, start + i, r.get(w) if w else 0)
    pos += nb
    if cnt:
        hb = (cnt * ew + 7) // 8
        if end - pos < cnt + hb:
            raise CodecError("block truncated: a field runs past the end")
        r = _Reader(buf, pos + cnt, pos + cnt + hb)
        prev = -1
        for i in range(cnt):
            p = buf[pos + i]
            if p >= plen or p <= prev:
                raise CodecError("malformed integer frame")
            prev = p
            _store(lo, hi, start + p, _load(lo, hi, start + p) | r.get(ew) << w)
        pos += cnt + hb
    if bitmap >= 0:  # the packed items (less one) to their places, last first
        k = plen
        for i in range(flen - 1, -1, -1):
            if (buf[bitmap + (i >> 3)] >> (i & 7)) & 1:
                k -= 1
                _store(lo, hi, start + i, _load(lo, hi, start + k) + 1)
            else:
                _store(lo, hi, start + i, 0)
    return pos


def _int_of(mode, param, v):
    # (ok, n): the mode's decode formula gives back v bit for bit. Same steps as the C encoder.
    x = v * _POW10[param] if mode == MODE_DECIMAL else v / param
    if not abs(x) < _EXACT_LIMIT:  # also NaN and inf
        return False, 0
    n = round(x)
    d = n / _POW10[param] if mode == MODE_DECIMAL else n * param
    if d != v or (d == 0 and struct.pack("<d", v) != struct.pack("<d", d)):
        return False, 0
    return True, n


def _sample_hits(mode, param, values, n, s):
    hits = 0
    for i in range(s):
        if _int_of(mode, param, values[i * n // s])[0]:
            hits += 1
    return hits


def _sample_cost(mode, param, values, n, s):
    # Estimated bits per sampled value: the magnitude of n, or 96 (an exception).
    bits = 0
    for i in range(s):
        ok, k = _int_of(mode, param, values[i * n // s])
        bits += _bitlen(_zz(k)) if ok else 96
    return bits


def _choose_exponent(values, n):
    # (e, hits): most exact sample values, ties to the smallest exponent.
    s = min(n, _SAMPLE)
    best = 0
    best_hits = 0
    for e in range(_MAX_EXP + 1):
        h = _sample_hits(MODE_DECIMAL, e, values, n, s)
        if h > best_hits:
            best_hits = h
            best = e
    return best, best_hits


def _isfinite(x):
    return x == x and x - x == 0


def _choose_scale(values, n):
    # A factor s with v == n * s for most sampled values, or 0 (SPEC.md: Encoder choices).
    s = min(n, _SCALE_SAMPLE)
    # Sized once, then cut: a list grown by append leaves a trail of freed arrays that
    # fragments a 64 KB heap.
    xs = [0.0] * s
    k = 0
    for i in range(s):
        x = values[i * n // s]
        if _isfinite(x) and x != 0:
            xs[k] = x
            k += 1
    del xs[k:]
    if k < 2:
        return 0.0
    xs.sort()
    m = xs[0] if abs(xs[0]) >= abs(xs[-1]) else xs[-1]
    d = float("inf")
    for i in range(len(xs)):
        if abs(xs[i]) < d:
            d = abs(xs[i])
        if i and xs[i] > xs[i - 1] and xs[i] - xs[i - 1] < d:
            d = xs[i] - xs[i - 1]
    del xs
    if not (d > 0 and _isfinite(d)):
        return 0.0
    best = 0.0
    best_hits = 0
    for div in range(1, _SCALE_DIVISORS + 1):
        step = d / div
        if step == 0:  # underflow: C's m / 0.0 is inf and fails the next test too
            continue
        q = m / step
        if not abs(q) < _EXACT_LIMIT:
            continue
        nm = round(q)
        if nm == 0:
            continue
        c = _bits(abs(m / nm))
        for ulp in (0, 1, -1):
            cand = _float((c + ulp) & _M64)
            if not (cand > 0 and _isfinite(cand)):
                continue
            h = _sample_hits(MODE_SCALED, cand, values, n, s)
            if h > best_hits:
                best_hits = h
                best = cand
    return best if 2 * best_hits > s else 0.0


def _bits(v):
    return struct.unpack("<Q", struct.pack("<d", v))[0]


def _float(u):
    return struct.unpack("<d", struct.pack("<Q", u))[0]


def _xor_bits(values, n):
    # Bits the XOR section spends after its first value: the encoder's decisions, counted.
    total = 0
    stored = _NO_LEAD
    prev = _bits(values[0]) if n else 0
    for i in range(1, n):
        cur = _bits(values[i])
        x = cur ^ prev
        prev = cur
        if not x:
            total += 2
            stored = _NO_LEAD
            continue
        lead = _lead_round(64 - _bitlen(x))
        trail = _ctz(x)
        if trail > _TRAIL_THRESHOLD:
            total += 11 + 64 - lead - trail
            stored = _NO_LEAD
        elif lead == stored:
            total += 2 + 64 - lead
        else:
            total += 5 + 64 - lead
            stored = lead
    return total


class Codec(Encoder):
    """Encoder and decoder with buffers for blocks of up to `max_points` points. The encoder
    of decimal blocks from integers, encode_decimal(), is tsenc.Encoder's."""

    def __init__(self, max_points=256):
        super().__init__(max_points)
        self._exc = array("I", bytes(4 * max_points))
        # Decode buffers come with the first decode(): a Codec that only encodes never pays
        # for them.
        self._ts = array("q")  # sized on the first decode
        self._values = array("d")

    def _bound(self, n):
        return encode_bound(n)  # encode() may need a scale, exceptions or XOR mode

    def encode(self, timestamps, values):
        """A block (bytes) of the points; the same bytes the C encoder writes."""
        n = len(timestamps)
        if n != len(values):
            raise ValueError("timestamps and values differ in length")
        vals = self._encode_timestamps(timestamps, n)
        buf = self._buf
        # Values: decimal, scaled or XOR (SPEC.md: Encoder choices). The integer mode's frames
        # are written where they belong, which gives their size; XOR mode, if smaller, writes
        # over them.
        e, dec_hits = _choose_exponent(values, n)
        dec_sample = min(n, _SAMPLE)
        sc_sample = min(n, _SCALE_SAMPLE)
        best = None
        # An integer mode exact on at most half of its sample is not planned (see the C);
        # of two candidates, the one with the smaller sampled integers is (ties: decimal).
        if 2 * dec_hits > dec_sample:
            best = (MODE_DECIMAL, e)
        if dec_hits < dec_sample:
            scale = _choose_scale(values, n)
            if scale > 0 and (
                best is None
                or _sample_cost(MODE_SCALED, scale, values, n, sc_sample) * dec_sample
                < _sample_cost(MODE_DECIMAL, e, values, n, dec_sample) * sc_sample
            ):
                best = (MODE_SCALED, scale)
        plan = self._plan_ints(best[0], best[1], values, n, vals) if best else (0, 0, 0, 0)
        use_xor = n == 0 or best is None
        if not use_xor and plan[2] > 8 + (2 * (n - 1) + 7) // 8:
            use_xor = 8 + (_xor_bits(values, n) + 7) // 8 < plan[2]
        if use_xor or best is None:
            buf[1] = MODE_XOR
            end = self._encode_xor(values, n, vals)
        else:
            buf[1] = best[0] | plan[0] << 2 | (best[1] << 3 if best[0] == MODE_DECIMAL else 0)
            end = self._write_values(best, values, vals, plan[1], plan[3])
        return bytes(memoryview(buf)[:end])

    def _plan_ints(self, mode, param, values, n, pos):
        # Fills the items (as tsenc's _put_counts does) and _exc, and writes k[0] and the
        # frames of the value section that starts at pos; returns (order, exceptions, section
        # bytes, where the frames end).
        lo = self._lo
        hi = self._hi
        exc = self._exc
        nexc = 0
        prev = 0
        bits0 = 0
        bits1 = 0
        for i in range(n):
            ok, k = _int_of(mode, param, values[i])
            if not ok:
                exc[nexc] = i
                nexc += 1
                k = prev
            bits0 += _bitlen(_zz(k))  # |k| < 2**53: no wrapping
            z = _zz(k - prev)
            bits1 += _bitlen(z)
            _store(lo, hi, i, z)
            prev = k
        order = self._order(n, bits0, bits1)
        start = pos + (0 if mode == MODE_DECIMAL else 8) + _varint_len(nexc)
        end = self._first_and_frames(n, start)
        return order, nexc, end - pos + 12 * nexc, end

    def _write_values(self, best, values, pos, nexc, end):
        # The value section around k[0] and its frames, which _plan_ints wrote and which end
        # at end (decimal mode's e is in the mode byte).
        mode, param = best
        buf = self._buf
        if mode != MODE_DECIMAL:
            struct.pack_into("<d", buf, pos, param)
            pos += 8
        _put_varint(buf, pos, nexc)
        pos = end
        exc = self._exc
        for j in range(nexc):
            struct.pack_into("<Id", buf, pos, exc[j], values[exc[j]])
            pos += 12
        return pos

    def _encode_xor(self, values, n, pos):
        buf = self._buf
        if not n:
            return pos
        prev = _bits(values[0])
        struct.pack_into("<Q", buf, pos, prev)
        self._pos = pos + 8
        stored = _NO_LEAD
        for i in range(1, n):
            cur = _bits(values[i])
            x = cur ^ prev
            prev = cur
            if not x:
                self._put(0, 2)
                stored = _NO_LEAD
                continue
            lead = _lead_round(64 - _bitlen(x))
            trail = _ctz(x)
            if trail > _TRAIL_THRESHOLD:
                sig = 64 - lead - trail
                self._put(1 | _lead_code(lead) << 2 | sig << 5, 11)
                self._put(x >> trail, sig)
                stored = _NO_LEAD
            elif lead == stored:
                self._put(2, 2)
                self._put(x, 64 - lead)
            else:
                self._put(3 | _lead_code(lead) << 2, 5)
                self._put(x, 64 - lead)
                stored = lead
        return self._flush()

    def decode(self, block):
        """(timestamps, values): memoryviews of n items over this Codec's own arrays, valid
        until its next decode. CodecError for an unreadable block."""
        end = len(block)
        n = block_count(block)
        if n > self.max_points:
            raise CodecError("block holds more points than this Codec was sized for")
        lo = self._lo
        hi = self._hi
        if len(self._ts) < self.max_points:
            self._ts = array("q", [0] * self.max_points)
            self._values = array("d", [0.0] * self.max_points)
        ts = self._ts
        values = self._values
        v2 = block[0] >= 2  # t1 - t0 and k[0] as varints, sparse frames
        pos = 6 if block[0] == 1 else _get_varint(block, 2, end)[0]
        if n:
            pos, prev = _get_varint(block, pos, end)
            prev = _unzigzag(prev)
            ts[0] = _signed(prev)
            if v2 and n >= 2:  # item 0 (t1 - t0) from its varint
                pos, z = _get_varint(block, pos, end)
                _store(lo, hi, 0, z)
            for s in range(1 if v2 else 0, n - 1, _FRAME):
                pos = _frame_decode(block, pos, end, min(_FRAME, n - 1 - s), lo, hi, s, v2)
            delta = 0
            for i in range(1, n):
                z = _unzigzag(_load(lo, hi, i - 1))
                delta = z if i == 1 else (delta + z) & _M64
                prev = (prev + delta) & _M64
                ts[i] = _signed(prev)
        mode = block[1] & 3
        if mode == MODE_XOR:
            self._decode_xor(block, pos, end, values, n)
            return memoryview(ts)[:n], memoryview(values)[:n]
        divide = mode == MODE_DECIMAL
        if divide:
            e = block[1] >> 3
            if not v2:  # format 1: e in its own byte
                if end - pos < 1:
                    raise CodecError("block truncated: a field runs past the end")
                e = block[pos]
                pos += 1
                if e > _MAX_EXP:
                    raise CodecError("unknown value mode or mode parameter out of range")
            factor = _POW10[e]
        else:
            if end - pos < 8:
                raise CodecError("block truncated: a field runs past the end")
            factor = struct.unpack_from("<d", block, pos)[0]
            if not (factor > 0 and _isfinite(factor)):
                raise CodecError("unknown value mode or mode parameter out of range")
            pos += 8
        order = block[1] >> 2 & 1
        pos, nexc = _get_varint(block, pos, end)
        if nexc > n:
            raise CodecError("malformed exception list")
        if v2 and n:  # item 0 (k[0]) from its varint
            pos, z = _get_varint(block, pos, end)
            _store(lo, hi, 0, z)
        for s in range(1 if v2 else 0, n, _FRAME):
            pos = _frame_decode(block, pos, end, min(_FRAME, n - s), lo, hi, s, v2)
        k = 0
        for i in range(n):
            z = _unzigzag(_load(lo, hi, i))
            k = (k + z) & _M64 if order else z
            values[i] = _signed(k) / factor if divide else _signed(k) * factor
        if (end - pos) // 12 < nexc:
            raise CodecError("block truncated: a field runs past the end")
        last = -1
        for _ in range(nexc):
            p, v = struct.unpack_from("<Id", block, pos)
            if p >= n or p <= last:
                raise CodecError("malformed exception list")
            last = p
            values[p] = v
            pos += 12
        if pos != end:
            raise CodecError("trailing bytes after the last field")
        return memoryview(ts)[:n], memoryview(values)[:n]

    def _decode_xor(self, block, pos, end, values, n):
        if not n:
            if pos != end:
                raise CodecError("trailing bytes after the last field")
            return
        if end - pos < 8:
            raise CodecError("block truncated: a field runs past the end")
        prev = struct.unpack_from("<Q", block, pos)[0]
        values[0] = struct.unpack_from("<d", block, pos)[0]
        r = _Reader(block, pos + 8, end)
        stored = _NO_LEAD
        for i in range(1, n):
            flag = r.get(2)
            if flag == 0:
                stored = _NO_LEAD
            elif flag == 1:
                lead = _LEAD_OF_CODE[r.get(3)]
                sig = r.get(6)
                if sig == 0 or lead + sig > 64 - _TRAIL_THRESHOLD - 1:
                    raise CodecError("malformed XOR-mode bit stream")
                prev ^= r.get(sig) << (64 - lead - sig)
                stored = _NO_LEAD
            elif flag == 2:
                if stored == _NO_LEAD:
                    raise CodecError("malformed XOR-mode bit stream")
                prev ^= r.get(64 - stored)
            else:
                stored = _LEAD_OF_CODE[r.get(3)]
                prev ^= r.get(64 - stored)
            struct.pack_into("<Q", values, 8 * i, prev)  # the bits, without a float object
        if (r.pos + 7) // 8 != end:
            raise CodecError("trailing bytes after the last field")


def block_count(block):
    """The point count a block declares, after the checks rt_block_count makes."""
    if len(block) < 2:
        raise CodecError("block truncated: a field runs past the end")
    version = block[0]
    if not 1 <= version <= FORMAT_VERSION:
        raise CodecError("unknown block format version")
    mode = block[1] & 3
    e = block[1] >> 3
    # format 1: bits 3..7 zero; format 2: the decimal exponent there, zero in other modes
    if (
        mode > MODE_SCALED
        or (mode == MODE_XOR and block[1])
        or (e and (version == 1 or mode != MODE_DECIMAL))
        or e > _MAX_EXP
    ):
        raise CodecError("unknown value mode or mode parameter out of range")
    # The least the sections can take: every varint and every frame is at least one byte.
    if version == 1:
        if len(block) < 6:
            raise CodecError("block truncated: a field runs past the end")
        n = struct.unpack_from("<I", block, 2)[0]
        least = 6
        if n:
            least += 1 + (n - 1 + _FRAME - 1) // _FRAME
        if mode != MODE_XOR:
            least += (1 if mode == MODE_DECIMAL else 8) + 1 + (n + _FRAME - 1) // _FRAME
    else:
        least, n = _get_varint(block, 2, len(block))
        if n > MAX_POINTS:
            raise CodecError("point count above the limit or more than the block can hold")
        if n:
            least += 1
        if n >= 2:
            least += 1 + (n - 2 + _FRAME - 1) // _FRAME
        if mode != MODE_XOR:
            least += (0 if mode == MODE_DECIMAL else 8) + 1
            if n:
                least += 1 + (n - 1 + _FRAME - 1) // _FRAME
    if mode == MODE_XOR:
        least += 8 if n else 0
    if n > MAX_POINTS or len(block) < least:
        raise CodecError("point count above the limit or more than the block can hold")
    return n
