"""CBOR (RFC 8949) for the device: the subset protocol/telemetry.cddl uses, in the Python
subset MicroPython runs. Runs on CPython too (tests compare it with cbor2 and with the
gateway's scan, protocol/cbor_scan.py).

    enc = Encoder(bytearray(1024))      # the buffer is the caller's, reused for every message
    enc.put_map(2); enc.put_int(0); enc.put_int(1); enc.put_int(1); enc.put_float(21.5)
    payload = enc.view()                # memoryview of the bytes written so far
    enc.reset()                         # next message, same buffer

    obj = loads(payload)                # small messages (acks, error bodies): Python objects
    dec = Decoder(); dec.start(data)    # any size: one item header per next(), nothing built
    while not dec.complete: kind = dec.next()
    dec.finish()

Encoding is deterministic (RFC 8949 §4.2): integers and lengths in their shortest form,
floats in preferred serialization (the shortest of binary16/32/64 that holds the value
exactly; every NaN as f97e00), map keys of `put()` sorted length-first then bytewise
(RFC 8949 §4.2.3, what cbor2's canonical=True does; for the protocol's keys 0..23 this is
the same order as §4.2.1). Valid protocol/vectors are reproduced byte for byte.

Decoding refuses, with one `CborError` carrying a short reason and the byte offset, all that
the gateway's scan refuses: anything not well-formed, indefinite lengths, integer or length
arguments not in their shortest form, invalid UTF-8 (checked strictly here: MicroPython's
own decode lets overlongs and surrogates through), duplicate map keys (compared as bytes,
exact because arguments are shortest), nesting deeper than `max_depth` (8, the gateway's),
a declared length or count beyond the bytes left (checked before anything is allocated,
so a length of 2^63 costs nothing), trailing bytes, tags, and simple values other than
false/true/null/undefined. Float encodings are not required to be shortest (the scan does
not require it either). The reasons are the scan's words, at the scan's offsets (tests/
firmware/test_cbor_vectors.py compares them). Refused here and not by the scan: a map with
more than MAX_KEYS keys (the table that bounds duplicate detection; the protocol's largest
map has 13), and in loads() only, container map keys and keys equal as Python values
(1, 1.0, True), which a dict would merge.

Memory: the encoder's put_int/put_float/put_array/put_map/put_utf8 allocate nothing
(small ints; t_cbor.py measures it); a Decoder's tables are allocated once in its
constructor. Integers beyond the port's small-int range (2^30 on 32-bit boards, 2^62 on the
unix port) are heap objects on MicroPython whatever this module does.

Floats on the boards: ESP32 and RP2040 MicroPython builds use binary32 floats, the unix port
binary64. Every binary32 value is exact in binary64, so put_float always writes the value the
device holds, in 3 or 5 bytes (a binary32 value never needs the 9-byte form). A device cannot
hold a reading that needs Float64 (0.1 arrives as 0.100000001490116, fa3dcccccd): decimal
readings that must stay exact travel as integers or as codec blocks (tscodec MODE_DECIMAL).
Decoding a binary64 item on such a board rounds it to binary32 (and re-encoding it gives
other bytes); the gateway's answers carry integers only, so nothing the device reads is
affected.
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython, for the differential tests

    def const(x):  # type: ignore[misc]  # the stubs' const is generic
        return x


MAX_DEPTH = const(8)  # protocol/constants.py MAX_DEPTH: the gateway refuses deeper nesting
MAX_KEYS = const(64)  # keys of the maps open at once that a Decoder checks for duplicates

# What Decoder.next() returns: the major type for 0..5, the simple value for 20..23.
UINT = const(0)
NINT = const(1)
BYTES = const(2)
TEXT = const(3)
ARRAY = const(4)
MAP = const(5)
FALSE = const(20)
TRUE = const(21)
NULL = const(22)
UNDEF = const(23)
FLOAT = const(25)

_MT_SIMPLE = const(0xE0)
_HALF = const(0xF9)
_SINGLE = const(0xFA)
_DOUBLE = const(0xFB)
# 2^64 is not a small int on any port; compared once per 8-byte integer only.
_LIMIT = 1 << 64
# The least argument each width may carry (RFC 8949 §4.2.1): smaller ones have shorter forms.
_ARG_MIN = (24, 0x100, 0x10000, 0x100000000)


class CborError(ValueError):
    """Bytes that are not CBOR this protocol accepts, or a value the encoder cannot write.
    `reason` is short and fixed-form (the gateway's scan uses the same phrases); `offset`
    is the byte where the problem starts, -1 when there is none."""

    def __init__(self, reason, offset=-1):
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class _Undefined:
    # CBOR `undefined` (f7): the scan accepts it, so the decoder must too; Python has no such
    # value, so it decodes to this one object (and encodes back to f7).
    def __repr__(self):
        return "undefined"


UNDEFINED = _Undefined()


class Encoder:
    """Writes CBOR items into `buf` (a bytearray the caller owns) from `pos` on. Raises
    CborError("buffer full") and writes nothing of an item that does not fit."""

    def __init__(self, buf):
        self.buf = buf
        self.pos = 0
        self._f = bytearray(8)  # a float's binary64 pattern, inspected without unpacking

    def reset(self):
        self.pos = 0

    def view(self):
        return memoryview(self.buf)[: self.pos]

    def _head(self, mt, arg):
        # mt: major type << 5; 0 <= arg < 2^64. Shortest argument form, RFC 8949 §4.2.1.
        buf = self.buf
        pos = self.pos
        if arg < 0:
            raise CborError("negative argument", pos)
        if arg < 24:
            if pos >= len(buf):
                raise CborError("buffer full", pos)
            buf[pos] = mt | arg
            self.pos = pos + 1
        elif arg < 0x100:
            if pos + 2 > len(buf):
                raise CborError("buffer full", pos)
            buf[pos] = mt | 24
            buf[pos + 1] = arg
            self.pos = pos + 2
        elif arg < 0x10000:
            if pos + 3 > len(buf):
                raise CborError("buffer full", pos)
            buf[pos] = mt | 25
            struct.pack_into(">H", buf, pos + 1, arg)
            self.pos = pos + 3
        elif arg < 0x100000000:
            if pos + 5 > len(buf):
                raise CborError("buffer full", pos)
            buf[pos] = mt | 26
            struct.pack_into(">I", buf, pos + 1, arg)
            self.pos = pos + 5
        elif arg < _LIMIT:
            if pos + 9 > len(buf):
                raise CborError("buffer full", pos)
            buf[pos] = mt | 27
            struct.pack_into(">Q", buf, pos + 1, arg)
            self.pos = pos + 9
        else:
            raise CborError("integer beyond 64 bits", pos)

    def put_int(self, n):
        # -2^64 <= n < 2^64; beyond that CBOR needs bignum tags, which the protocol refuses.
        if n >= 0:
            self._head(0x00, n)
        else:
            self._head(0x20, -1 - n)

    def put_array(self, count):
        self._head(0x80, count)

    def put_map(self, pairs):
        # The caller writes `pairs` keys and values after it, keys in ascending order.
        self._head(0xA0, pairs)

    def put_bool(self, v):
        self._simple(21 if v else 20)

    def put_null(self):
        self._simple(22)

    def put_undefined(self):
        self._simple(23)

    def _simple(self, v):
        pos = self.pos
        if pos >= len(self.buf):
            raise CborError("buffer full", pos)
        self.buf[pos] = _MT_SIMPLE | v
        self.pos = pos + 1

    def put_bytes(self, b):
        self._copy(0x40, b)

    def put_utf8(self, b):
        """A text string from bytes already UTF-8 (e.g. a metric name encoded once at
        start-up): no allocation. The bytes are not checked."""
        self._copy(0x60, b)

    def put_text(self, s):
        # str -> UTF-8 allocates; hot paths pre-encode with put_utf8.
        self._copy(0x60, s.encode())

    def _copy(self, mt, b):
        n = len(b)
        start = self.pos
        self._head(mt, n)
        pos = self.pos
        if pos + n > len(self.buf):
            self.pos = start  # nothing of the item stays
            raise CborError("buffer full", start)
        self.buf[pos : pos + n] = b
        self.pos = pos + n

    def put_float(self, x):
        """The shortest of binary16/32/64 that holds x exactly (RFC 8949 §4.2.2). Decided on
        x's binary64 bit pattern, byte by byte: no float arithmetic, no struct 'e' (absent
        on some ports), and only small ints, so nothing is allocated."""
        f = self._f
        struct.pack_into(">d", f, 0, x)
        sign = f[0] & 0x80
        e = ((f[0] & 0x7F) << 4) | (f[1] >> 4)  # biased binary64 exponent
        if e == 0x7FF:
            if (f[1] & 0x0F) | f[2] | f[3] | f[4] | f[5] | f[6] | f[7]:
                self._put3(0x7E, 0)  # NaN: one encoding for all of them (§4.2.2)
            else:
                self._put3(sign | 0x7C, 0)  # ±infinity
            return
        if e == 0:
            if (f[1] & 0x0F) | f[2] | f[3] | f[4] | f[5] | f[6] | f[7]:
                self._put_double()  # binary64 subnormal: below binary32's range
            else:
                self._put3(sign, 0)  # ±0.0
            return
        # binary32 holds x only if the low 29 of binary64's 52 mantissa bits are zero.
        if not ((f[4] & 0x1F) | f[5] | f[6] | f[7]):
            m = ((f[1] & 0x0F) << 19) | (f[2] << 11) | (f[3] << 3) | (f[4] >> 5)  # 23 bits
            x2 = e - 1023  # unbiased exponent
            if not m & 0x1FFF:  # the low 13 of 23 zero: a 10-bit mantissa, binary16's
                h = m >> 13
                if -14 <= x2 <= 15:
                    self._put3(sign | ((x2 + 15) << 2) | (h >> 8), h & 0xFF)
                    return
                if -24 <= x2 < -14:
                    # binary16 subnormal h' * 2^-24 = (1024 + h) * 2^(x2 - 10): exact iff the
                    # bits shifted out are zero.
                    k = -14 - x2
                    full = 0x400 | h
                    if not full & ((1 << k) - 1):
                        full >>= k
                        self._put3(sign | (full >> 8), full & 0xFF)
                        return
            if -126 <= x2 <= 127:
                be = x2 + 127
                self._put5(sign | (be >> 1), ((be & 1) << 7) | (m >> 16), (m >> 8) & 0xFF, m)
                return
            if -149 <= x2 < -126:
                k = -126 - x2  # binary32 subnormal, same reasoning as binary16's
                full = 0x800000 | m
                if not full & ((1 << k) - 1):
                    full >>= k
                    self._put5(sign, full >> 16, (full >> 8) & 0xFF, full)
                    return
        self._put_double()

    def _put3(self, hi, lo):
        buf = self.buf
        pos = self.pos
        if pos + 3 > len(buf):
            raise CborError("buffer full", pos)
        buf[pos] = _HALF
        buf[pos + 1] = hi
        buf[pos + 2] = lo
        self.pos = pos + 3

    def _put5(self, b0, b1, b2, b3):
        buf = self.buf
        pos = self.pos
        if pos + 5 > len(buf):
            raise CborError("buffer full", pos)
        buf[pos] = _SINGLE
        buf[pos + 1] = b0
        buf[pos + 2] = b1
        buf[pos + 3] = b2
        buf[pos + 4] = b3 & 0xFF
        self.pos = pos + 5

    def _put_double(self):
        buf = self.buf
        pos = self.pos
        if pos + 9 > len(buf):
            raise CborError("buffer full", pos)
        buf[pos] = _DOUBLE
        f = self._f
        for i in range(8):
            buf[pos + 1 + i] = f[i]
        self.pos = pos + 9

    def put(self, obj, depth=0):
        """Any value of the subset, recursively (allocates: for messages built rarely).
        Nesting is refused where the decoder, and the gateway, would refuse it."""
        if obj is None:
            self.put_null()
        elif obj is True or obj is False:
            self.put_bool(obj)
        elif isinstance(obj, int):
            self.put_int(obj)
        elif isinstance(obj, float):
            self.put_float(obj)
        elif isinstance(obj, str):
            self.put_text(obj)
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            self.put_bytes(obj)
        elif obj is UNDEFINED:
            self.put_undefined()
        elif isinstance(obj, (list, tuple, dict)):
            if len(obj) and depth >= MAX_DEPTH:
                raise CborError(f"nesting deeper than {MAX_DEPTH} levels", self.pos)
            if isinstance(obj, dict):
                self._put_dict(obj, depth + 1)
            else:
                self.put_array(len(obj))
                for item in obj:
                    self.put(item, depth + 1)
        else:
            raise CborError("cannot encode " + type(obj).__name__, self.pos)

    def _put_dict(self, obj, depth):
        # Each key is encoded once where the map will go, copied out, and the position reset:
        # the sort key is its encoding (length first, then bytes, as cbor2 canonical=True).
        start = self.pos
        keyed = []
        for k in obj:
            self.put(k, depth)
            kb = bytes(self.buf[start : self.pos])
            self.pos = start
            keyed.append((len(kb), kb, k))
        keyed.sort(key=_first_two)
        self.put_map(len(keyed))
        for _, kb, k in keyed:
            self._raw(kb)
            self.put(obj[k], depth)

    def _raw(self, b):
        pos = self.pos
        n = len(b)
        if pos + n > len(self.buf):
            raise CborError("buffer full", pos)
        self.buf[pos : pos + n] = b
        self.pos = pos + n


def _first_two(t):
    return (t[0], t[1])


def dumps(obj, size=1024):
    """obj encoded in a new buffer of `size` bytes (convenience, allocates)."""
    enc = Encoder(bytearray(size))
    enc.put(obj)
    return bytes(enc.view())


def _utf8_bad(data, pos, end):
    # Offset of the first byte of the first invalid sequence in data[pos:end], or -1.
    # RFC 3629 §4 byte ranges: no overlong forms, no surrogates, nothing above U+10FFFF.
    while pos < end:
        c = data[pos]
        if c < 0x80:
            pos += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            n = 1
        elif c == 0xE0:
            n = 2
            lo = 0xA0
        elif c == 0xED:
            n = 2
            hi = 0x9F
        elif 0xE1 <= c <= 0xEF:
            n = 2
        elif c == 0xF0:
            n = 3
            lo = 0x90
        elif 0xF1 <= c <= 0xF3:
            n = 3
        elif c == 0xF4:
            n = 3
            hi = 0x8F
        else:
            return pos
        if pos + n >= end:
            return pos
        b = data[pos + 1]
        if b < lo or b > hi:
            return pos
        for i in range(2, n + 1):
            if data[pos + i] & 0xC0 != 0x80:
                return pos
        pos += n + 1
    return -1


class Decoder:
    """A pull parser: start(data), then next() once per item header until `complete`, then
    finish(). After next(): for UINT `arg` is the value, for NINT the value is -1 - arg,
    for BYTES/TEXT `arg` is the length and `at` the offset of the bytes in `data`, for
    ARRAY/MAP `arg` is the count of items/pairs (their items follow), for FLOAT `arg` is the
    width (2, 4 or 8) and get_float() the value. Every check happens in next(), so walking a
    whole item is a full validation, and it allocates nothing while the arguments are small
    ints (t_cbor.py measures it on a 256-point batch).

    Bounded: a frame per open non-empty container (at most max_depth), key spans of the
    open maps in a table of max_keys (a map with more keys is refused), so memory does not
    depend on the input; time is linear in the input, plus key comparisons within a map
    (at most max_keys^2 / 2 per map)."""

    def __init__(self, max_depth=MAX_DEPTH, max_keys=MAX_KEYS):
        self.max_depth = max_depth
        self._left = [0] * max_depth  # items still to come in each open container
        self._ismap = bytearray(max_depth)
        self._idx = [0] * max_depth  # items seen in it: even ones are keys in a map
        self._kstart = [0] * max_depth  # offset where the map's current key starts
        self._kbase = [0] * max_depth  # the map's first entry in _keys
        self._keys = [0] * (2 * max_keys)  # (start, end) of each key seen in an open map
        self._nkeys = 0
        self._f = bytearray(4)  # binary16 widened to binary32 bits
        self.start(b"")

    def start(self, data, end=-1):
        """Read `data` (bytes, bytearray or memoryview); only its first `end` bytes if given."""
        self.data = data
        self.end = len(data) if end < 0 else end
        self.pos = 0
        self.depth = 0
        self._nkeys = 0
        self.complete = False
        self.kind = -1
        self.arg = 0
        self.at = 0

    def finish(self):
        """Refuse unless exactly one item was read and nothing follows it."""
        if not self.complete:
            raise CborError("truncated: an item is missing", self.pos)
        if self.pos != self.end:
            raise CborError(f"{self.end - self.pos} trailing bytes after the item", self.pos)

    def next(self):
        if self.complete:
            raise CborError("read past the end of the item", self.pos)
        data = self.data
        end = self.end
        pos = self.pos
        if pos >= end:
            if end == 0:
                raise CborError("empty payload", 0)
            raise CborError("truncated: an item is missing", pos)
        depth = self.depth
        if depth and self._ismap[depth - 1] and not self._idx[depth - 1] & 1:
            self._kstart[depth - 1] = pos
        start = pos
        initial = data[pos]
        pos += 1
        major = initial >> 5
        info = initial & 0x1F
        if major == 7 and 25 <= info <= 27:
            # A float: its bits are not an integer argument (and would be a long int).
            n = 1 << (info - 24)
            if pos + n > end:
                raise CborError("truncated: argument runs past the end", start)
            # Decoded only when asked (get_float): a float value is a heap object, and
            # validating a batch must not cost one per reading.
            self.at = pos
            self.arg = n
            self.pos = pos + n
            self.kind = FLOAT
            self._done()
            return FLOAT
        if info < 24:
            arg = info
        elif info < 28:
            n = 1 << (info - 24)
            if pos + n > end:
                raise CborError("truncated: argument runs past the end", start)
            arg = 0
            for i in range(n):
                arg = (arg << 8) | data[pos + i]
            pos += n
            if major != 7 and arg < _ARG_MIN[info - 24]:
                raise CborError("argument not in its shortest form", start)
        elif info == 31:
            if major == 7:
                raise CborError("break code outside an indefinite-length item", start)
            if major <= 1 or major == 6:
                raise CborError("not well-formed: additional information 31", start)
            raise CborError("indefinite-length items are not accepted", start)
        else:
            raise CborError(f"not well-formed: reserved additional information {info}", start)

        if major == 2 or major == 3:
            # Checked before the caller can slice or allocate anything of that length.
            if arg > end - pos:
                raise CborError(f"truncated: string of {arg} bytes declared", start)
            if major == 3:
                bad = _utf8_bad(data, pos, pos + arg)
                if bad >= 0:
                    raise CborError("invalid UTF-8 in text string", bad)
            self.at = pos
            pos += arg
        elif major == 4 or major == 5:
            # Every item takes at least one byte, so a count beyond the bytes left is false.
            items = arg * 2 if major == 5 else arg
            if items > end - pos:
                raise CborError(f"truncated: {arg} elements declared", start)
            if items:
                if depth >= self.max_depth:
                    raise CborError(f"nesting deeper than {self.max_depth} levels", start)
                self._left[depth] = items
                self._ismap[depth] = major == 5
                self._idx[depth] = 0
                self._kbase[depth] = self._nkeys
                self.depth = depth + 1
                self.pos = pos
                self.kind = major
                self.arg = arg
                return major
        elif major == 6:
            raise CborError("tags are not part of the schema", start)
        elif major == 7:
            if info == 24:
                if arg < 32:
                    raise CborError("not well-formed: two-byte simple value below 32", start)
                raise CborError(f"simple value {arg} is not part of the schema", start)
            if info < 20:
                raise CborError(f"simple value {info} is not part of the schema", start)
            major = info  # FALSE, TRUE, NULL, UNDEF
        self.pos = pos
        self.kind = major
        self.arg = arg
        self._done()
        return major

    def _done(self):
        # The item that ends at self.pos is complete: count it in its container; a container
        # that thereby closes is an item of its parent in turn. A key's span (from the start
        # recorded in its map's frame) is checked against the map's earlier keys here, which
        # covers container keys too.
        end = self.pos
        depth = self.depth
        while depth:
            i = depth - 1
            if self._ismap[i] and not self._idx[i] & 1:
                self._key(i, self._kstart[i], end)
            self._idx[i] += 1
            self._left[i] -= 1
            if self._left[i]:
                return
            if self._ismap[i]:
                self._nkeys = self._kbase[i]  # its keys are no longer needed
            depth = i
            self.depth = i
        self.complete = True

    def _key(self, i, ks, ke):
        data = self.data
        keys = self._keys
        n = ke - ks
        j = self._kbase[i]
        top = self._nkeys
        while j < top:
            s = keys[j]
            if keys[j + 1] - s == n:
                k = 0
                while k < n and data[s + k] == data[ks + k]:
                    k += 1
                if k == n:
                    raise CborError("duplicate map key", ks)
            j += 2
        if top + 2 > len(keys):
            raise CborError(f"more than {len(keys) // 2} map keys open at once", ks)
        keys[top] = ks
        keys[top + 1] = ke
        self._nkeys = top + 2

    def get_float(self):
        """The value of the FLOAT item next() just returned (allocates the float)."""
        data = self.data
        pos = self.at
        n = self.arg
        if n == 8:
            return struct.unpack_from(">d", data, pos)[0]
        if n == 4:
            return struct.unpack_from(">f", data, pos)[0]
        # binary16 -> binary32 bits (exact: every binary16 value is a binary32 value).
        h = (data[pos] << 8) | data[pos + 1]
        sign = (h >> 15) << 7
        e = (h >> 10) & 0x1F
        m = h & 0x3FF
        if e == 0x1F:
            be = 0xFF
        elif e:
            be = e + 112  # -15 + 127
        elif m:
            # Subnormal m * 2^-24: normalise so the leading 1 becomes implicit.
            be = 113  # 1 - 15 + 127, lowered once per shift
            while not m & 0x400:
                m <<= 1
                be -= 1
            m &= 0x3FF
        else:
            be = 0
        f = self._f
        m <<= 13  # 23-bit binary32 mantissa
        f[0] = sign | (be >> 1)
        f[1] = ((be & 1) << 7) | (m >> 16)
        f[2] = (m >> 8) & 0xFF
        f[3] = m & 0xFF
        return struct.unpack_from(">f", f, 0)[0]


_shared = None


def _decoder():
    global _shared
    if _shared is None:
        _shared = Decoder()
    return _shared


def check(data, dec=None):
    """Raise CborError unless `data` is exactly one acceptable item. Builds nothing."""
    d = dec or _decoder()
    d.start(data)
    while not d.complete:
        d.next()
    d.finish()


def loads(data, dec=None):
    """The one item in `data` as Python objects (list, dict, int, float, bytes, str, bool,
    None, UNDEFINED). Memory grows with the items actually present, never with a declared
    count. Map keys must be scalars (the protocol's are small ints); keys that are equal as
    Python values (1, 1.0, True) are refused as duplicates, not merged."""
    d = dec or _decoder()
    d.start(data)
    obj = _build(d)
    d.finish()
    return obj


def _build(d):
    kind = d.next()
    if kind == UINT:
        return d.arg
    if kind == FLOAT:
        return d.get_float()
    if kind == NINT:
        return -1 - d.arg
    if kind in (BYTES, TEXT):
        b = bytes(d.data[d.at : d.at + d.arg])
        return b.decode() if kind == TEXT else b  # UTF-8 already checked by next()
    if kind == ARRAY:
        items = []
        for _ in range(d.arg):
            items.append(_build(d))
        return items
    if kind == MAP:
        pairs = {}
        for _ in range(d.arg):
            at = d.pos
            k = _build(d)
            if isinstance(k, (list, dict)):
                raise CborError("map key is a container", at)
            if k in pairs:
                raise CborError("duplicate map key", at)
            pairs[k] = _build(d)
        return pairs
    if kind == NULL:
        return None
    if kind == UNDEF:
        return UNDEFINED
    return kind == TRUE
