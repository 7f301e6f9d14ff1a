"""The gateway's validator and the normative CDDL (checked by pycddl) agree.

The gateway does not run pycddl on the hot path: measured with `just bench protocol`, it
costs tens of times what decoding does. These tests hold the hand-written validator to the
schema instead: on every vector, on generated batches, and on the gateway's own answers.
"""

from __future__ import annotations

import cbor2
import pycddl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import ProtocolError, parse_batch

from .conftest import by_kind, cddl_schema, load_manifest, vector_bytes

# Refused by rules the CDDL cannot state; pycddl accepts these, and must.
BEYOND_CDDL = {
    "block-corrupt",
    "block-count-mismatch",
    "block-ts-decreasing",
    "block-ts-negative",
    "duplicate-metric",
    "length-mismatch",
    "seq-overflow",
    "t0-plus-offset-overflow",
    "ts-decreasing",
    "value-int-2-53-plus-1",
    "health-ring-overfull",
    "health-sampled-backwards",
}
# Refused by the CDDL, but pycddl 0.6 does not enforce it (a map matching one group choice
# with the other choice's keys present too); the validator refuses them.
PYCDDL_MISSES = {"plain-and-block"}


def cddl_accepts(message: str, data: bytes) -> bool:
    try:
        cddl_schema(message).validate_cbor(data)
    except pycddl.ValidationError:
        return False
    return True


@pytest.mark.parametrize("entry", by_kind("valid"))
def test_cddl_accepts_every_valid_vector(entry):
    assert cddl_accepts(entry["message"], vector_bytes(entry))


def test_cddl_refuses_the_invalid_vectors_except_semantic_ones():
    accepted = set()
    for entry in load_manifest():
        if entry["expect"] not in ("4.22",):
            continue  # 4.00/4.13 are the decoder's limits, not the schema's
        if cddl_accepts(entry["message"], vector_bytes(entry)):
            accepted.add(entry["name"])
    assert accepted == BEYOND_CDDL | PYCDDL_MISSES


def test_every_beyond_cddl_vector_exists():
    names = {e["name"] for e in load_manifest()}
    assert names >= BEYOND_CDDL | PYCDDL_MISSES


def _pycddl_skips_metric(batch: dict, error: ProtocolError) -> bool:
    """pycddl 0.6 checks nothing about key 0 of a series matched by the second group choice
    (block form): not its type, not its pattern. The validator does."""
    if not error.path.endswith(".metric"):
        return False
    index = int(error.path.split("[", 1)[1].split("]", 1)[0])
    return 3 in batch[6][index]


# Near-valid batches: each field is usually right, sometimes of a wrong type or range.
_ints = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.sampled_from([0, 1, 2**32 - 1, 2**32, 2**53, 2**53 + 1, 2**63 - 1, 2**63, -1]),
)
_values = st.one_of(st.floats(allow_nan=True), _ints, st.none(), st.booleans(), st.text())
_metric = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True), st.text(max_size=40))
_device = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", fullmatch=True), st.text(max_size=70)
)


@st.composite
def _series(draw):
    n = draw(st.integers(0, 5))
    if draw(st.integers(0, 9)) == 0:
        return {0: draw(_metric), 3: draw(st.binary(max_size=4)), 4: draw(_ints)}
    ts = sorted(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)))
    if draw(st.booleans()):
        ts = draw(st.lists(_ints, min_size=n, max_size=n))
    values = draw(st.lists(_values, min_size=n, max_size=n + draw(st.integers(0, 1))))
    return {0: draw(_metric), 1: ts, 2: values}


@st.composite
def _batches(draw):
    batch = {
        0: draw(st.sampled_from([1, 1, 1, 2])),
        1: draw(_device),
        2: draw(_ints),
        3: draw(_ints),
        4: draw(_ints),
        6: draw(st.lists(_series(), min_size=0, max_size=3)),
    }
    if draw(st.booleans()):
        batch[5] = [draw(_ints), draw(_ints)]
    if draw(st.integers(0, 9)) == 0:
        del batch[draw(st.sampled_from(sorted(batch)))]
    return batch


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches())
def test_validator_never_accepts_what_the_cddl_refuses(batch):
    data = cbor2.dumps(batch, canonical=True)
    try:
        parse_batch(data)
    except ProtocolError as e:
        assert e.code_text in ("4.00", "4.13", "4.22")
        return
    assert cddl_accepts("telemetry-batch", data), "validator accepted a schema-invalid batch"


@settings(max_examples=400, deadline=None)
@given(_batches())
def test_what_the_cddl_accepts_fails_only_on_rules_beyond_it(batch):
    data = cbor2.dumps(batch, canonical=True)
    if len(data) > 16384 or not cddl_accepts("telemetry-batch", data):
        return
    try:
        parse_batch(data)
    except ProtocolError as e:
        if _pycddl_skips_metric(batch, e):
            return
        beyond = (
            "decreasing",
            "values for",
            "more than one series",
            "Float64",
            "2^63 - 1",
            "block",
        )
        assert any(text in e.reason for text in beyond), str(e)
