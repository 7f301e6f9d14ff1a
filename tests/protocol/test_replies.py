"""The gateway's answers match the schema and are the same bytes for the same answer."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    Envelope,
    ProtocolError,
    encode_ack,
    encode_envelope,
    encode_error,
    encode_health_ack,
    parse_envelope,
)
from protocol.constants import MAX_REASON_BYTES, SERVICE_UNAVAILABLE, UNPROCESSABLE_ENTITY

from .conftest import cddl_schema


def test_ack_matches_schema_and_says_what_is_durable():
    body = encode_ack(boot=7, high_seq=1002, gateway_time_us=1_764_000_000_000_000)
    cddl_schema("telemetry-ack").validate_cbor(body)
    assert cbor2.loads(body) == {0: 1, 1: 7, 2: 1002, 3: 1_764_000_000_000_000}
    assert body == encode_ack(7, 1002, 1_764_000_000_000_000)


def test_error_body_carries_code_reason_and_path():
    err = ProtocolError(UNPROCESSABLE_ENTITY, "time offset 3 is decreasing", "series[0].ts[2]")
    body = encode_error(err, gateway_time_us=5)
    cddl_schema("error-body").validate_cbor(body)
    assert cbor2.loads(body) == {
        0: 1,
        1: 0x96,
        2: "time offset 3 is decreasing at series[0].ts[2]",
        3: 5,
    }


@pytest.mark.parametrize("reason", ["x" * 1000, "é" * 300, "a" + "€" * 100])
def test_long_reasons_are_cut_on_a_character_boundary(reason):
    body = encode_error((SERVICE_UNAVAILABLE, reason), gateway_time_us=0)
    cddl_schema("error-body").validate_cbor(body)
    text = cbor2.loads(body)[2]
    assert len(text.encode()) <= MAX_REASON_BYTES
    assert text.endswith("...")
    assert reason.startswith(text[:-3])


def test_health_ack_matches_schema():
    body = encode_health_ack(gateway_time_us=42)
    cddl_schema("health-ack").validate_cbor(body)
    assert cbor2.loads(body) == {0: 1, 1: 42}


def test_envelope_round_trips_the_payload_unchanged():
    payload = bytes(range(256)) * 3
    data = encode_envelope("gw-1", received_us=1_764_000_000_000_000, spool_id=9, payload=payload)
    cddl_schema("gateway-envelope").validate_cbor(data)
    env = parse_envelope(data)
    assert env == Envelope("gw-1", 1_764_000_000_000_000, 9, payload)


@pytest.mark.parametrize(
    "fields, error",
    [
        ({1: "gw.1"}, "does not match"),
        ({3: -1}, "unsigned integer"),
        ({4: "text"}, "expected a byte string"),
        ({5: 0}, "unknown key 5"),
    ],
)
def test_envelope_refuses_bad_fields(fields, error):
    good = cbor2.loads(encode_envelope("gw-1", 1, 2, b"x"))
    with pytest.raises(ProtocolError, match=error):
        parse_envelope(cbor2.dumps({**good, **fields}))


_UINT32 = st.integers(0, 2**32 - 1)
_INT64 = st.integers(-(2**63), 2**63 - 1)
# every width of the shortest form, and its edges
_EDGES = st.sampled_from([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1])


@given(
    boot=_UINT32 | _EDGES.filter(lambda v: v < 2**32),
    seq=_EDGES | st.integers(0, 2**63 - 1),
    t=_INT64 | _EDGES,
)
def test_hand_built_answers_are_cbor2_canonical_bytes(boot, seq, t):
    assert encode_ack(boot, seq, t) == cbor2.dumps({0: 1, 1: boot, 2: seq, 3: t}, canonical=True)
    assert encode_health_ack(t) == cbor2.dumps({0: 1, 1: t}, canonical=True)


@given(
    gateway=st.text(min_size=1, max_size=64),
    received=_INT64 | _EDGES,
    spool_id=_EDGES | st.integers(0, 2**63 - 1),
    payload=st.binary(max_size=70000),
)
def test_hand_built_envelope_is_cbor2_canonical_bytes(gateway, received, spool_id, payload):
    expected = cbor2.dumps({0: 1, 1: gateway, 2: received, 3: spool_id, 4: payload}, canonical=True)
    assert encode_envelope(gateway, received, spool_id, payload) == expected
    assert encode_envelope(gateway, received, spool_id, memoryview(payload)) == expected
