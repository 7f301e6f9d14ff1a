"""protocol/vectors under the 64 KB heap: every valid vector decodes and re-encodes byte for
byte (token by token, and through Python objects where they fit); every vector the gateway's
scan refuses is refused with the scan's reason, without MemoryError; the schema-level ones
(4.22, 4.13) are well-formed CBOR and decode.

The vectors directory comes from the environment (RINGTAIL_VECTORS, set by the pytest
driver). vectors.json is read one line at a time (parsed whole it would not fit next to the
buffer) and every vector file into one 16 KB buffer: the largest valid vector is exactly
16384 bytes. Two files are larger than that and cannot be held in this heap:
- nesting-100000.cbor (100,001 bytes): its first 16 KB are read, and the decoder must refuse
  them for their nesting at byte 8, not for being cut short. tests/firmware/
  test_cbor_vectors.py shows under CPython that the whole file is refused with the same
  reason at the same offset, so the prefix decides it.
- oversize.cbor (16,385 bytes, 4.13): the gateway refuses it by size before parsing; here
  its prefix must be refused as truncated, and the CPython test decodes the whole file.
"""

import gc
import os

import mptest
from cbor import (
    ARRAY,
    BYTES,
    FALSE,
    FLOAT,
    MAP,
    NINT,
    NULL,
    TEXT,
    TRUE,
    UINT,
    UNDEF,
    CborError,
    Decoder,
    Encoder,
    loads,
)
from mptest import Failure, metric

_CAP = 16384  # the largest vector, exactly-max-size, is 16384 bytes
_IN = None  # allocated on first use by _vector_buffer(): only the vector tests need it
# Re-encoded bytes go through this window and are compared with _IN as it fills: a second
# 16 KB buffer does not fit next to the first. A string longer than the window would fail
# the test with "buffer full" (the longest in the vectors is a 250-byte codec block).
_OUT = bytearray(1024)


def _vector_buffer():
    # Allocated on demand, right after a collection so the 16 KB block is found whole;
    # each pytest case runs one test in a fresh process, so it never coexists with a
    # large allocation of another test.
    global _IN
    if _IN is None:
        gc.collect()
        metric("heap_free_before_vector_buffer", gc.mem_free())
        _IN = bytearray(_CAP)
    return _IN


_MAX_OBJECT_VECTOR = 512  # vectors decoded to objects too: larger ones do not fit the heap


def _dir():
    d = os.getenv("RINGTAIL_VECTORS")
    if not d:
        raise Failure("RINGTAIL_VECTORS is not set: the pytest driver points it at the vectors")
    return d


def _field(line, key):
    # `  "key": "value",` -> value; the lines of vectors.json written with indent=1.
    if not line.startswith('"' + key + '":'):
        return None
    v = line[len(key) + 3 :].strip()
    if v.endswith(","):
        v = v[:-1]
    if v.startswith('"'):
        return v[1:-1].replace('\\"', '"')
    return v


def _vectors():
    """(name, file, expect, error) of each vector, read as the file is walked."""
    name = file = expect = error = None
    with open(_dir() + "/vectors.json") as f:
        for line in f:
            line = line.strip()
            if line.startswith("}"):
                yield name, file, expect, error
                name = file = expect = error = None
                continue
            for key in ("name", "file", "expect", "error"):
                v = _field(line, key)
                if v is not None:
                    if key == "name":
                        name = v
                    elif key == "file":
                        file = v
                    elif key == "expect":
                        expect = v
                    else:
                        error = v


def _read(file):
    """The vector's bytes into _IN: (length read, whether the file holds more)."""
    buf = _vector_buffer()
    with open(_dir() + "/" + file, "rb") as f:
        n = f.readinto(buf) or 0
        more = len(f.read(1)) > 0
    return n, more


def _cbor_level(expect, error):
    # What the gateway's scan refuses (protocol/cbor_scan.py): every 4.00, and among the
    # 4.22s the tags and unassigned simple values (the scan flags those as schema errors).
    return expect == "4.00" or error.startswith("tags are not") or error.startswith("simple value")


def _same(a, b, n):
    for i in range(n):
        if a[i] != b[i]:
            return i
    return -1


def _flush(enc, done, end, name):
    # The window's bytes must be the next ones of the input. Returns the bytes compared.
    for i in range(enc.pos):
        if done + i >= end or _OUT[i] != _IN[done + i]:
            raise Failure(name + " differs at byte " + str(done + i))
    n = enc.pos
    enc.reset()
    return done + n


def _copy_tokens(dec, enc, name):
    # Every item header read and written again: what the decoder saw is all the encoder
    # needs. Returns how many bytes were re-encoded, all equal to the input's.
    done = 0
    while not dec.complete:
        if enc.pos > len(_OUT) // 2:
            done = _flush(enc, done, dec.end, name)
        kind = dec.next()
        if kind == UINT:
            enc.put_int(dec.arg)
        elif kind == NINT:
            enc.put_int(-1 - dec.arg)
        elif kind == BYTES:
            enc.put_bytes(memoryview(dec.data)[dec.at : dec.at + dec.arg])
        elif kind == TEXT:
            enc.put_utf8(memoryview(dec.data)[dec.at : dec.at + dec.arg])
        elif kind == ARRAY:
            enc.put_array(dec.arg)
        elif kind == MAP:
            enc.put_map(dec.arg)
        elif kind == FLOAT:
            enc.put_float(dec.get_float())
        elif kind in (FALSE, TRUE):
            enc.put_bool(kind == TRUE)
        elif kind == NULL:
            enc.put_null()
        elif kind == UNDEF:
            enc.put_undefined()
        else:
            raise Failure("unknown kind " + str(kind))
    dec.finish()
    return _flush(enc, done, dec.end, name)


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


def test_every_prefix_of_a_valid_vector_is_refused():
    n, _ = _read("valid/health-full.cbor")
    data = bytes(_IN[:n])
    for cut in range(n):
        e = _refusal(data, cut)
        cut_short = e is not None and (
            e.reason.startswith("truncated") or e.reason == "empty payload"
        )
        mptest.check(cut_short, "prefix of", cut, "bytes:", e and e.reason)


def test_valid_vectors_round_trip_byte_for_byte():
    dec = Decoder()
    enc = Encoder(_OUT)
    seen = objects = 0
    for name, file, expect, _ in _vectors():
        if expect != "2.04":
            continue
        n, more = _read(file)
        mptest.check(not more, name, "is larger than the buffer")
        dec.start(_IN, n)
        enc.reset()
        done = _copy_tokens(dec, enc, name)
        mptest.check(done == n, name, "re-encoded to", done, "bytes, not", n)
        if n <= _MAX_OBJECT_VECTOR:
            # Through Python objects too: put() must find the same key order and forms.
            obj = loads(memoryview(_IN)[:n])
            enc.reset()
            enc.put(obj)
            mptest.check(enc.pos == n and _same(_IN, _OUT, n) < 0, name, "objects differ")
            objects += 1
            obj = None
        seen += 1
        gc.collect()
    metric("valid_vectors_round_tripped", seen)
    metric("valid_vectors_round_tripped_as_objects", objects)
    mptest.check(seen >= 25 and objects >= 20, "too few valid vectors:", seen, objects)


def test_cbor_level_invalid_vectors_refused_with_the_gateways_reason():
    refused = 0
    for name, file, expect, error in _vectors():
        if expect == "2.04":
            continue
        n, more = _read(file)
        if name == "nesting-100000":
            # Only a prefix fits; see the module docstring for why it is enough.
            mptest.check(more and n == _CAP, "nesting-100000 was expected to be larger")
            e = _refusal(_IN, n)
            mptest.check(e is not None, name, "accepted")
            mptest.check(e.reason.startswith("nesting deeper"), name, "refused for", e.reason)
            mptest.check(e.offset == 8, name, "refused at", e.offset)
            refused += 1
            continue
        if not _cbor_level(expect, error):
            continue
        mptest.check(not more, name, "is larger than the buffer")
        e = _refusal(_IN, n)
        mptest.check(e is not None, name, "accepted")
        mptest.check(error in e.reason, name, "refused for", repr(e.reason), "not", repr(error))
        # loads() must refuse it the same way, before building anything large.
        try:
            loads(memoryview(_IN)[:n])
            raise Failure(name + " accepted by loads")
        except CborError as e2:
            mptest.check(e2.reason == e.reason, name, "loads refused for", e2.reason)
        refused += 1
        gc.collect()
    metric("invalid_vectors_refused", refused)
    mptest.check(refused >= 20, "too few refusals:", refused)


def test_schema_invalid_vectors_are_well_formed_cbor():
    # 4.22 (and 4.13) vectors are for the schema and the limits: as CBOR they are fine.
    accepted = 0
    for name, file, expect, error in _vectors():
        if expect == "2.04" or name == "nesting-100000" or _cbor_level(expect, error):
            continue
        n, more = _read(file)
        e = _refusal(_IN, n)
        if more:
            # Only oversize (4.13, refused by the gateway by its size, unparsed) is larger
            # than the buffer; its prefix is well-formed as far as it goes.
            mptest.check(expect == "4.13", name, "is larger than the buffer")
            cut_short = e is not None and e.reason.startswith("truncated")
            mptest.check(cut_short, name, "prefix refused for", e and e.reason)
            accepted += 1
            continue
        mptest.check(e is None, name, "refused:", e and e.reason)
        if n <= _MAX_OBJECT_VECTOR:
            loads(memoryview(_IN)[:n])
        accepted += 1
        gc.collect()
    metric("schema_invalid_vectors_decoded", accepted)
    mptest.check(accepted >= 40, "too few schema-invalid vectors:", accepted)


mptest.run(
    [
        test_valid_vectors_round_trip_byte_for_byte,
        test_cbor_level_invalid_vectors_refused_with_the_gateways_reason,
        test_schema_invalid_vectors_are_well_formed_cbor,
        test_every_prefix_of_a_valid_vector_is_refused,
    ]
)
