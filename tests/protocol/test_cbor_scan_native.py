"""The C scan (native.cbor_scan) against the Python reference (cbor_scan.scan_python): the same
decision, reason text, offset and schema flag for every input."""

from __future__ import annotations

import itertools
import struct

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import cbor_scan
from protocol.cbor_scan import CborRejected, scan_python
from protocol.constants import MAX_DEPTH

from .conftest import VECTORS, load_manifest

native = pytest.importorskip("native")

DEPTHS = (0, 1, 2, 3, 8, 64)


def python_outcome(data, depth):
    try:
        scan_python(data, depth)
    except CborRejected as e:
        return (e.reason, e.offset, e.schema_error)
    return None


def same(data, depth=MAX_DEPTH):
    want = python_outcome(data, depth)
    got = native.cbor_scan(data, depth)
    assert got == want, (bytes(data).hex(), depth)
    # and through the public entry the gateway calls
    try:
        cbor_scan.scan(data, depth)
    except CborRejected as e:
        assert (e.reason, e.offset, e.schema_error) == want
        assert str(e) == f"{want[0]} at byte {want[1]}"  # type: ignore[index]
    else:
        assert want is None
    return want


def test_the_public_scan_is_the_native_one():
    assert cbor_scan.NATIVE
    assert cbor_scan.scan is not cbor_scan.scan_python


@pytest.mark.parametrize("entry", [pytest.param(e, id=e["name"]) for e in load_manifest()])
def test_every_vector_and_its_cuts(entry):
    data = (VECTORS / entry["file"]).read_bytes()
    for depth in DEPTHS:
        same(data, depth)
    step = max(1, len(data) // 300)
    for cut in range(0, len(data), step):
        same(data[:cut])
        same(data[cut:])
    for i in range(0, len(data), step):  # every byte replaced by a few interesting ones
        for b in (0x00, 0x1F, 0x3F, 0x5F, 0x7F, 0x9F, 0xBF, 0xDF, 0xFF, 0xF8, 0x18, 0x1B):
            same(data[:i] + bytes([b]) + data[i + 1 :])


def test_vectors_accepted_exactly_as_before():
    for entry in load_manifest():
        data = (VECTORS / entry["file"]).read_bytes()
        if entry["file"].startswith("valid/"):
            assert native.cbor_scan(data, MAX_DEPTH) is None, entry["name"]


def test_every_single_and_two_byte_input():
    for a in range(256):
        same(bytes([a]))
        for b in range(256):
            same(bytes([a, b]))


# Interesting UTF-8 bytes: ASCII, continuation bounds, every lead byte class and its limits.
_UTF8_BYTES = [0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF]
_UTF8_BYTES += [0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]


def test_utf8_in_text_strings_exhaustively():
    for n in range(1, 4):
        for content in itertools.product(_UTF8_BYTES, repeat=n):
            text = bytes(content)
            same(bytes([0x60 + n]) + text)
            same(b"\x82" + bytes([0x60 + n + 1]) + b"a" + text + b"\x00")
    for pad in range(0, 20):  # the 8-byte ASCII stride, with the bad byte at every phase
        for bad in (b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xc3"):
            text = b"x" * pad + bad + b"y" * (19 - pad)
            same(_tstr(text))


def _tstr(content: bytes) -> bytes:
    n = len(content)
    head = bytes([0x60 + n]) if n < 24 else bytes([0x78, n])
    return head + content


def _map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    n = len(pairs)
    if n < 24:
        head = bytes([0xA0 + n])
    elif n < 256:
        head = bytes([0xB8, n])
    else:
        head = b"\xb9" + struct.pack(">H", n)
    return head + b"".join(k + v for k, v in pairs)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 18, 40, 300, 5000])
def test_duplicate_keys_in_large_maps(n):
    keys = [cbor2.dumps(i) for i in range(n)]
    pairs = [(k, b"\x00") for k in keys]
    assert same(_map(pairs), 64) is None
    for dup_at in sorted({1, n // 2, n - 1, n} - {0}):
        if dup_at >= n:
            dup_at = n - 1
        for dup_of in sorted({0, dup_at // 2, dup_at - 1} - {-1}):
            if dup_of >= dup_at:
                continue
            bad = list(pairs)
            bad[dup_at] = (keys[dup_of], b"\x01")
            assert same(_map(bad), 64)[0] == "duplicate map key"  # type: ignore[index]


def test_nested_and_container_keys_in_big_maps():
    inner = _map([(cbor2.dumps(i), b"\xf6") for i in range(20)])
    outer_pairs = [(cbor2.dumps(i), inner) for i in range(20)]
    assert same(_map(outer_pairs)) is None
    # the same inner maps as keys: distinct only if their bytes differ
    keyed = [(_map([(b"\x00", cbor2.dumps(i))] * 1), b"\x00") for i in range(30)]
    assert same(_map(keyed)) is None
    keyed[29] = keyed[3]
    assert same(_map(keyed))[0] == "duplicate map key"  # type: ignore[index]
    # keys equal across sibling maps are fine; inside one map they are not
    deep = _map([(cbor2.dumps(i), _map([(b"\x01", b"\x00")] * 1)) for i in range(20)])
    assert same(deep) is None
    bad_inner = _map([(cbor2.dumps(i % 18), b"\x00") for i in range(19)])
    assert same(_map([(b"\x00", bad_inner)]))[0] == "duplicate map key"  # type: ignore[index]


def test_depth_limits_and_deep_inputs():
    for depth in (0, 1, 8, 31, 32, 33, 100):
        for levels in (depth - 1, depth, depth + 1):
            if levels < 0:
                continue
            same(b"\x81" * levels + b"\x00", depth)
            same(b"\xa1\x00" * levels + b"\x00", depth)
    same(b"\x81" * 50_000 + b"\x00", 10**6)
    same(b"\x81" * 50_000 + b"\x00", 2**70)
    same(b"\x81" * 50_000, 10**6)
    same(b"\x81\x00", -5)


def test_huge_declared_lengths():
    for head in (b"\x5b", b"\x7b", b"\x9b", b"\xbb"):
        for arg in (2**32, 2**63, 2**64 - 1, 2**63 - 1):
            same(head + struct.pack(">Q", arg) + b"\x00" * 4)
    for head in (b"\xba", b"\xb9", b"\xb8"):
        same(head + b"\x00\x00\x00\x03"[: {b"\xba": 4, b"\xb9": 2, b"\xb8": 1}[head]] + b"\x00" * 5)


def test_buffer_types():
    data = cbor2.dumps({0: [1, 2, "x"], 1: b"ab"}, canonical=True)
    for obj in (data, bytearray(data), memoryview(data), memoryview(bytearray(data))):
        assert native.cbor_scan(obj, 8) is None
    bad = data + b"\x00"
    for obj in (bytearray(bad), memoryview(bad)):
        same(obj)
    # a strided view: C refuses it, the public scan falls back to the Python scan
    strided = memoryview(b"\x00\x82\x00\x01\x00\x02")[1::2]
    with pytest.raises(TypeError):
        native.cbor_scan(strided, 8)
    with pytest.raises(TypeError):
        scan_python(strided, 8)
    with pytest.raises(TypeError):
        cbor_scan.scan(strided, 8)
    with pytest.raises(TypeError):
        cbor_scan.scan("text", 8)  # type: ignore[arg-type]


# Random and mutated inputs.

_cbor_values = st.recursive(
    st.one_of(
        st.integers(-(2**64), 2**64 - 1),
        st.floats(),
        st.text(max_size=8),
        st.binary(max_size=8),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.integers(-30, 30) | st.text(max_size=3), inner, max_size=20),
    ),
    max_leaves=40,
)

# Item heads the generator glues together: every major type with short, 1..8-byte and
# reserved/indefinite arguments, in and out of shortest form.
_heads = st.builds(
    lambda major, info, arg: bytes([(major << 5) | info]) + arg,
    st.integers(0, 7),
    st.integers(0, 31),
    st.sampled_from([b"", b"\x00", b"\x17", b"\x18", b"\xff", b"\x00\xff", b"\x01\x00"])
    | st.binary(max_size=8),
)


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, where, byte in ops:
        i = where % (len(buf) + 1)
        if kind == 0 and i < len(buf):
            buf[i] = byte
        elif kind == 1 and i < len(buf):
            buf[i] ^= 1 << (byte % 8)
        elif kind == 2:
            buf.insert(i, byte)
        elif kind == 3 and i < len(buf):
            del buf[i]
        elif kind == 4:
            del buf[i:]
        elif kind == 5 and i < len(buf):  # duplicate a run (repeats keys and items)
            buf[i:i] = buf[i : i + 1 + byte % 8]
    return bytes(buf)


_ops = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 2**16), st.integers(0, 255)), max_size=4
)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=96), st.sampled_from(DEPTHS))
def test_random_bytes_agree(data, depth):
    same(data, depth)


@settings(max_examples=3000, deadline=None)
@given(_cbor_values, _ops, st.booleans(), st.sampled_from(DEPTHS))
def test_mutated_cbor_agrees(value, ops, canonical, depth):
    data = cbor2.dumps(value, canonical=canonical)
    if canonical:
        assert same(data, 64) is None
    same(_mutate(data, ops), depth)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(_heads | st.sampled_from([b"\x81", b"\xa1", b"\x82", b"\xa2", b"\x00"]), max_size=24)
)
def test_glued_heads_agree(parts):
    data = b"".join(parts)
    for depth in (2, 8):
        same(data, depth)


@settings(max_examples=500, deadline=None)
@given(_cbor_values, _ops)
def test_mutated_batches_agree(series, ops):
    batch = {0: 1, 1: "dev", 2: 1, 3: 0, 4: 0, 6: [{0: "m", 1: [1, 2], 2: series}]}
    same(_mutate(cbor2.dumps(batch, canonical=True), ops))
