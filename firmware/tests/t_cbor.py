"""cbor.py under the 64 KB heap: preferred serialization of floats and integers at every
boundary, hostile items refused with the gateway scan's reasons, bounded tables, and an
encoder hot path that allocates nothing (measured: METRIC lines). The protocol/vectors are
tested by t_cbor_vectors.py: this module and a 16 KB vector buffer do not fit one heap.
"""

import gc
import struct

import mptest
from cbor import FLOAT, UNDEFINED, CborError, Decoder, Encoder, check, dumps, loads
from mptest import Failure, metric

_DEC = Decoder()


def _refusal(data, end=-1):
    dec = _DEC
    dec.start(data, end)
    try:
        while not dec.complete:
            dec.next()
        dec.finish()
    except CborError as e:
        return e
    return None


# (binary64 pattern, preferred serialization), from cbor2 canonical=True. Floats are built
# from their bits: float literals are not correctly rounded on every port.
_FLOATS = (
    ("0000000000000000", "f90000"),  # 0.0
    ("8000000000000000", "f98000"),  # -0.0
    ("3ff0000000000000", "f93c00"),  # 1.0
    ("c004000000000000", "f9c100"),  # -2.5
    ("40effc0000000000", "f97bff"),  # 65504.0, the largest binary16
    ("40effc2000000000", "fa477fe100"),  # 65505.0
    ("40e0000000000000", "f97800"),  # 32768.0
    ("40f0000000000000", "fa47800000"),  # 65536.0: binary16's exponent ends at 15
    ("3e70000000000000", "f90001"),  # 2^-24, the least binary16 subnormal
    ("3e88000000000000", "f90003"),  # 3 * 2^-24
    ("3f10000000000000", "f90400"),  # 2^-14, the least binary16 normal
    ("3e60000000000000", "fa33000000"),  # 2^-25: below binary16
    ("36a0000000000000", "fa00000001"),  # 2^-149, the least binary32 subnormal
    ("3690000000000000", "fb3690000000000000"),  # 2^-150: below binary32
    ("3e70040000000000", "fa33802000"),  # (1 + 2^-10) * 2^-24: too precise for binary16
    ("3eb0080000000000", "fa35804000"),  # (1 + 2^-9) * 2^-20: likewise
    ("36a8000000000000", "fb36a8000000000000"),  # 1.5 * 2^-149: too precise for binary32
    ("37d2000000000000", "fa00090000"),  # (1 + 2^-3) * 2^-130, a binary32 subnormal
    ("3810000000000000", "fa00800000"),  # 2^-126, the least binary32 normal
    ("3800000000000000", "fa00400000"),  # 2^-127
    ("37a16c262777579c", "fb37a16c262777579c"),  # 1e-40
    ("3fb999999999999a", "fb3fb999999999999a"),  # 0.1
    ("7e37e43c8800759c", "fb7e37e43c8800759c"),  # 1e300
    ("7ff0000000000000", "f97c00"),  # inf
    ("fff0000000000000", "f9fc00"),  # -inf
    ("7ff8000000000000", "f97e00"),  # NaN
    ("fff8000000000000", "f97e00"),  # NaN, sign set: one encoding for every NaN
    ("7ff0000000000001", "f97e00"),  # NaN with a payload
    ("47efffffe0000000", "fa7f7fffff"),  # the largest binary32
    ("47f0000000000000", "fb47f0000000000000"),  # 2^128: beyond binary32
    ("40f86a0000000000", "fa47c35000"),  # 100000.0
    ("3ff000001ad7f29b", "fb3ff000001ad7f29b"),  # 1.0000001
    ("0000000000000001", "fb0000000000000001"),  # 5e-324, a binary64 subnormal
    ("4035800000000000", "f94d60"),  # 21.5
    ("c08faa0000000000", "fac47d5000"),  # -1013.25
)


def _bits(x):
    return struct.pack(">d", x)


def test_floats_use_preferred_serialization():
    enc = Encoder(bytearray(16))
    for pattern, want in _FLOATS:
        x = struct.unpack(">d", bytes.fromhex(pattern))[0]
        enc.reset()
        enc.put_float(x)
        got = bytes(enc.view()).hex()
        mptest.check(got == want, pattern, "encoded as", got, "not", want)
        y = loads(enc.view())
        if x != x:
            mptest.check(y != y, pattern, "did not decode to NaN")
        else:
            mptest.check(_bits(y) == _bits(x), pattern, "decoded to", _bits(y).hex())


def test_every_half_float_decodes_and_re_encodes_to_itself():
    # All 65536 binary16 patterns: the hand-written widening is exact, and the encoder picks
    # binary16 back for every one (NaNs become the one f97e00).
    enc = Encoder(bytearray(8))
    item = bytearray(3)
    item[0] = 0xF9
    for h in range(0x10000):
        item[1] = h >> 8
        item[2] = h & 0xFF
        x = loads(item)
        enc.reset()
        enc.put_float(x)
        out = enc.buf
        if (h & 0x7C00) == 0x7C00 and h & 0x3FF:
            mptest.check(x != x and out[1] == 0x7E and out[2] == 0, hex(h), "NaN")
        else:
            ok = enc.pos == 3 and out[0] == 0xF9 and out[1] == item[1] and out[2] == item[2]
            mptest.check(ok, hex(h), "->", x, "->", bytes(enc.view()).hex())


_INTS = (
    (0, "00"),
    (23, "17"),
    (24, "1818"),
    (255, "18ff"),
    (256, "190100"),
    (65535, "19ffff"),
    (65536, "1a00010000"),
    (4294967295, "1affffffff"),
    (4294967296, "1b0000000100000000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-1, "20"),
    (-24, "37"),
    (-25, "3818"),
    (-256, "38ff"),
    (-257, "390100"),
    (-4294967297, "3b0000000100000000"),
    (-18446744073709551616, "3bffffffffffffffff"),
)


def test_integers_use_their_shortest_form_up_to_64_bits():
    enc = Encoder(bytearray(16))
    for n, want in _INTS:
        enc.reset()
        enc.put_int(n)
        got = bytes(enc.view()).hex()
        mptest.check(got == want, n, "encoded as", got, "not", want)
        mptest.check(loads(enc.view()) == n, n, "did not decode to itself")
    for n in (18446744073709551616, -18446744073709551617):
        enc.reset()
        try:
            enc.put_int(n)
            raise Failure(str(n) + " encoded")
        except CborError as e:
            mptest.check(enc.pos == 0 and "64 bits" in e.reason, n, e.reason)


def test_buffer_full_writes_nothing_of_the_item():
    enc = Encoder(bytearray(4))
    enc.put_int(1)
    for put, arg in ((enc.put_float, 0.1), (enc.put_int, 1 << 40), (enc.put_bytes, b"abcd")):
        try:
            put(arg)
            raise Failure("no room, yet written")
        except CborError as e:
            mptest.check(e.reason == "buffer full" and enc.pos == 1, "partial write", enc.pos)
    enc.put_float(1.0)  # f93c00 fits exactly
    mptest.check(bytes(enc.view()) == b"\x01\xf9\x3c\x00", "after refusals")


def _bad(hexstr, reason):
    data = bytes.fromhex(hexstr)
    e = _refusal(data)
    mptest.check(e is not None, hexstr, "accepted")
    mptest.check(e.reason.startswith(reason), hexstr, "refused for", e.reason, "not", reason)


def test_hostile_and_invalid_items_are_refused():
    _bad("62c080", "invalid UTF-8")  # overlong NUL
    _bad("63eda080", "invalid UTF-8")  # a surrogate, U+D800
    _bad("64f4908080", "invalid UTF-8")  # U+110000
    _bad("62e282", "invalid UTF-8")  # a sequence cut short
    _bad("61ff", "invalid UTF-8")
    _bad("62c180", "invalid UTF-8")  # overlong two-byte form
    _bad("63e09fbf", "invalid UTF-8")  # overlong three-byte form (below U+0800)
    _bad("64f08fbfbf", "invalid UTF-8")  # overlong four-byte form (below U+10000)
    _bad("63e280e2", "invalid UTF-8")  # a continuation byte missing
    # The edges of every range are accepted: U+0080, U+0800, U+D7FF, U+E000, U+10000,
    # U+10FFFF.
    for ok in ("62c280", "63e0a080", "63ed9fbf", "63ee8080", "64f0908080", "64f48fbfbf"):
        mptest.check(_refusal(bytes.fromhex(ok)) is None, ok, "refused")
    # Arguments one below the least their width may carry, then the least.
    for short, least in (
        ("1817", "1818"),
        ("1900ff", "190100"),
        ("1a0000ffff", "1a00010000"),
        ("3b00000000ffffffff", "3b0000000100000000"),
        ("9817" + "00" * 23, "9818" + "00" * 24),
    ):
        _bad(short, "argument not in its shortest form")
        mptest.check(_refusal(bytes.fromhex(least)) is None, least, "refused")
    _bad("a28100008100", "duplicate map key")  # container keys, compared as bytes
    _bad("c11a00000000", "tags are not")
    _bad("f8ff", "simple value 255")
    _bad("e0", "simple value 0")
    _bad("5f41004100ff", "indefinite-length")
    _bad("1f", "not well-formed: additional information 31")
    _bad("1c", "not well-formed: reserved")
    _bad("1900", "truncated: argument")
    _bad("fa0000", "truncated: argument")
    _bad("9b7fffffffffffffff", "truncated: 9223372036854775807 elements")
    _bad("820102ff", "1 trailing bytes")
    _bad("8201", "truncated: 2 elements declared")
    _bad("821818", "truncated: an item is missing")
    _bad("", "empty payload")
    # Keys 1 and 1.0 differ as bytes (the scan accepts them, so does check()), but would be
    # one key as Python objects: loads() refuses rather than keep one of the two values.
    data = bytes.fromhex("a20100f93c0000")
    check(data)
    try:
        loads(data)
        raise Failure("keys 1 and 1.0 merged")
    except CborError as e:
        mptest.check(e.reason == "duplicate map key" and e.offset == 3, e.reason, e.offset)


def test_map_keys_table_bounds_memory():
    # 64 distinct keys pass; the 65th is refused (the protocol's largest map has 13 keys).
    enc = Encoder(bytearray(512))
    enc.put_map(64)
    for k in range(64):
        enc.put_int(k)
        enc.put_null()
    mptest.check(_refusal(enc.view()) is None, "64 keys refused")
    enc.reset()
    enc.put_map(65)
    for k in range(65):
        enc.put_int(k)
        enc.put_null()
    e = _refusal(enc.view())
    mptest.check(e is not None and e.reason.startswith("more than 64 map keys"), e)


def test_put_refuses_nesting_the_gateway_would_refuse():
    obj = [1]
    for _ in range(7):
        obj = [obj]
    dumps(obj)  # 8 levels: the deepest accepted
    try:
        dumps([obj])
        raise Failure("9 levels encoded")
    except CborError as e:
        mptest.check(e.reason.startswith("nesting deeper"), e.reason)
    # An empty array opens no level (as in the scan): 8 non-empty arrays around one is fine.
    obj = []
    for _ in range(8):
        obj = [obj]
    data = dumps(obj)
    mptest.check(data == b"\x81" * 8 + b"\x80" and loads(data) == obj, "empty innermost")
    mptest.check(loads(dumps(UNDEFINED)) is UNDEFINED, "undefined")


def _batch_parts(enc, ts, vals, names):
    # A telemetry batch with one series of len(ts) points, written with the hot-path calls.
    enc.reset()
    enc.put_map(6)
    enc.put_int(0)
    enc.put_int(1)
    enc.put_int(1)
    enc.put_utf8(names[0])
    enc.put_int(2)
    enc.put_int(7)
    enc.put_int(3)
    enc.put_int(1000)
    enc.put_int(4)
    enc.put_int(5000000)
    enc.put_int(6)
    enc.put_array(1)
    enc.put_map(3)
    enc.put_int(0)
    enc.put_utf8(names[1])
    enc.put_int(1)
    enc.put_array(len(ts))
    for t in ts:
        enc.put_int(t)
    enc.put_int(2)
    enc.put_array(len(vals))
    for v in vals:
        enc.put_float(v)


def _alloc(fn, *args):
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        fn(*args)
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def test_encoding_a_256_point_batch_allocates_nothing():
    names = (b"sht31-kitchen", b"temp_c")
    ts = [i * 1000 for i in range(256)]  # small ints: no heap per item
    # Values of every width: binary16, binary32 and binary64 forms.
    vals = [(i * 0.25) if i % 3 == 0 else (i + 0.1 if i % 3 == 1 else -1013.25) for i in range(256)]
    enc = Encoder(bytearray(4096))
    _batch_parts(enc, ts, vals, names)  # warm: every path once
    grew = _alloc(_batch_parts, enc, ts, vals, names)
    metric("encode_256_point_batch_heap_bytes", grew)
    metric("encode_256_point_batch_bytes", enc.pos)
    per_float = _alloc(_put_floats, enc, vals)
    per_int = _alloc(_put_ints, enc, ts)
    metric("put_float_heap_bytes_per_256", per_float)
    metric("put_int_heap_bytes_per_256", per_int)
    mptest.check(grew == 0 and per_float == 0 and per_int == 0, "allocated", grew, per_float)
    # The bytes are a valid item and hold the values bit for bit, in order.
    _batch_parts(enc, ts, vals, names)
    dec = Decoder()
    dec.start(enc.view())
    k = 0
    while not dec.complete:
        if dec.next() == FLOAT:
            mptest.check(_bits(dec.get_float()) == _bits(vals[k]), "value", k)
            k += 1
    dec.finish()
    mptest.check(k == 256, "floats decoded:", k)


def _put_floats(enc, vals):
    enc.reset()
    for v in vals:
        enc.put_float(v)


def _put_ints(enc, ts):
    enc.reset()
    for t in ts:
        enc.put_int(t)


def test_decoding_a_256_point_batch_is_bounded():
    names = (b"sht31-kitchen", b"temp_c")
    enc = Encoder(bytearray(4096))
    vals = [i + 0.1 for i in range(256)]  # binary64 on this port: 9 bytes each, the widest
    _batch_parts(enc, range(0, 256000, 1000), vals, names)
    vals = None
    data = bytes(enc.view())
    enc = None
    metric("decode_256_point_batch_bytes", len(data))
    dec = Decoder()
    check(data, dec)  # warm
    # Validating walks every header and builds nothing.
    scanned = _alloc(check, data, dec)
    metric("check_256_point_batch_heap_bytes", scanned)
    mptest.check(scanned == 0, "check allocated", scanned)
    # As objects: what stays is the objects themselves (on this port a float is one 32-byte
    # heap block, a list slot 8 bytes); each float also leaves one small tuple of garbage
    # from struct.unpack_from, collected as usual.
    gc.collect()
    metric("heap_free_before_loads", gc.mem_free())
    before = gc.mem_alloc()
    obj = loads(data, dec)
    gc.collect()
    retained = gc.mem_alloc() - before
    metric("loads_256_point_batch_retained_heap_bytes", retained)
    values = obj[6][0][2]
    mptest.check(len(values) == 256 and obj[6][0][1][255] == 255000, "points lost")
    for i in range(256):
        mptest.check(_bits(values[i]) == _bits(i + 0.1), "value", i)
    mptest.check(retained < 16384, "loads retained", retained)


mptest.run(
    [
        test_floats_use_preferred_serialization,
        test_every_half_float_decodes_and_re_encodes_to_itself,
        test_integers_use_their_shortest_form_up_to_64_bits,
        test_buffer_full_writes_nothing_of_the_item,
        test_hostile_and_invalid_items_are_refused,
        test_map_keys_table_bounds_memory,
        test_put_refuses_nesting_the_gateway_would_refuse,
        test_encoding_a_256_point_batch_allocates_nothing,
        test_decoding_a_256_point_batch_is_bounded,
    ]
)
