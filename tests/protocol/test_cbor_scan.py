"""The bounded scan: refuses what it must, accepts what cbor2 decodes the same way."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ProtocolError, parse_batch
from protocol.cbor_scan import CborRejected, scan

from .conftest import PARSERS, by_kind, vector_bytes


@pytest.mark.parametrize("entry", by_kind("valid"))
def test_every_truncation_of_a_valid_vector_is_malformed(entry):
    data = vector_bytes(entry)
    step = max(1, len(data) // 200)  # the 16 KiB vectors: 200 cut points, not 16,000
    for cut in range(0, len(data), step):
        with pytest.raises(ProtocolError) as caught:
            PARSERS[entry["message"]](data[:cut])
        assert caught.value.code_text == "4.00", (cut, str(caught.value))


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x18\x17", "shortest form"),  # 23 in two bytes
        (b"\x19\x00\xff", "shortest form"),  # 255 in three bytes
        (b"\x1a\x00\x00\xff\xff", "shortest form"),
        (b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff", "shortest form"),
        (b"\x78\x01a", "shortest form"),  # a one-byte string with a one-byte length argument
        (b"\xa2\x82\x01\x02\x00\x82\x01\x02\x00", "duplicate map key"),  # container keys
        (b"\xa2\x61a\x00\x61a\x01", "duplicate map key"),
        (b"\x5f\x41a\xff", "indefinite-length"),
        (b"\x3f", "additional information 31"),
        (b"\xdf", "additional information 31"),
        (b"\x1d", "reserved"),
        (b"\x82\x01", "truncated"),
        (b"\x1b\x00", "truncated"),
    ],
)
def test_scan_refuses(data, reason):
    with pytest.raises(CborRejected) as caught:
        scan(data, 8)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        b"\xf9\x3c\x00",  # 1.0 as half
        b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",  # 1.0 as double: floats need no shortest form
        b"\xa2\x01\x00\x21\x00",  # keys 1 and -2 differ
        b"\xa2\x61a\x00\x41a\x00",  # "a" and h'61' are different keys
        b"\x80",
        b"\xa0",
        b"\xf4",
        b"\xf6",
    ],
)
def test_scan_accepts(data):
    scan(data, 8)


def test_depth_limit_is_exact():
    scan(b"\x81" * 8 + b"\x00", 8)
    with pytest.raises(CborRejected, match="nesting deeper than 8"):
        scan(b"\x81" * 9 + b"\x00", 8)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_get_a_protocol_error_or_a_batch(data):
    try:
        parse_batch(data)
    except ProtocolError as e:
        assert e.code_text in ("4.00", "4.22")


_cbor_values = st.recursive(
    st.one_of(
        st.integers(-(2**64), 2**64 - 1),
        st.floats(),
        st.text(max_size=5),
        st.binary(max_size=5),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.integers(-30, 30), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=1000, deadline=None)
@given(_cbor_values)
def test_scan_accepts_whatever_cbor2_encodes_canonically(value):
    data = cbor2.dumps(value, canonical=True)
    scan(data, 64)


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=1, max_size=48))
def test_what_the_scan_accepts_cbor2_decodes_whole(data):
    try:
        scan(data, 8)
    except CborRejected:
        return
    # cbor2 must agree that it is one complete item, so the scan never lets a payload
    # through that the decoder would then refuse or read differently.
    cbor2.loads(data)
