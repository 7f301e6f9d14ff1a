"""Every vector in protocol/vectors/ gets the outcome its manifest promises."""

from __future__ import annotations

import tracemalloc

import cbor2
import cbor_diag
import pytest

import protocol.decoding
from protocol import ProtocolError
from protocol.make_vectors import build

from .conftest import PARSERS, VECTORS, by_kind, load_manifest, vector_bytes


def test_there_are_enough_vectors_of_each_kind():
    manifest = load_manifest()
    valid = [e for e in manifest if e["expect"] == "2.04"]
    invalid = [e for e in manifest if e["expect"] != "2.04"]
    assert len(valid) >= 20
    assert len(invalid) >= 30
    assert {e["expect"] for e in invalid} == {"4.00", "4.13", "4.22"}


def test_files_on_disk_are_what_the_generator_makes():
    expected = build()
    on_disk = {
        str(p.relative_to(VECTORS)): p.read_bytes()
        for p in VECTORS.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    assert sorted(on_disk) == sorted(expected), "run `python -m protocol.make_vectors`"
    stale = [name for name in expected if on_disk[name] != expected[name]]
    assert not stale, f"out of date, run `python -m protocol.make_vectors`: {stale}"


@pytest.mark.parametrize("entry", by_kind("valid") + by_kind("invalid"))
def test_diag_twin_spells_the_same_bytes(entry):
    data = vector_bytes(entry)
    diag = (VECTORS / entry["file"]).with_suffix(".diag").read_text(encoding="utf-8")
    if entry["diag"] == "edn":
        assert cbor_diag.diag2cbor(diag) == data
    else:
        hex_body = diag.split("h'", 1)[1].rsplit("'", 1)[0]
        assert bytes.fromhex(hex_body) == data


@pytest.mark.parametrize("entry", by_kind("valid"))
def test_valid_vector_is_accepted_with_its_identity(entry):
    parsed = PARSERS[entry["message"]](vector_bytes(entry))
    if entry["message"] == "telemetry-batch":
        assert (parsed.device, parsed.boot, parsed.seq) == (
            entry["device"],
            entry["boot"],
            entry["seq"],
        )
        assert parsed.readings == entry["readings"]
        assert parsed.last_seq == entry["last_seq"]
        assert parsed.msg_id == f"{entry['device']}:{entry['boot']}:{entry['seq']}"


@pytest.mark.parametrize("entry", by_kind("valid"))
def test_valid_vector_is_deterministically_encoded(entry):
    # Any encoder using preferred serialization (the firmware's) must reproduce these bytes.
    data = vector_bytes(entry)
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data


@pytest.mark.parametrize("entry", by_kind("invalid"))
def test_invalid_vector_is_refused_with_its_code_and_reason(entry):
    with pytest.raises(ProtocolError) as caught:
        PARSERS[entry["message"]](vector_bytes(entry))
    assert caught.value.code_text == entry["expect"]
    assert entry["error"] in str(caught.value)


def _refused_before_decoding(entry: dict) -> bool:
    # 4.00, and 4.13 for the payload's size; a reading count over the limit is only known
    # after decoding.
    return entry["expect"] == "4.00" or (
        entry["expect"] == "4.13" and "readings" not in entry["error"]
    )


@pytest.mark.parametrize(
    "entry", [p for p in by_kind("invalid") if _refused_before_decoding(p.values[0])]
)
def test_limits_are_checked_before_a_full_decode(entry, monkeypatch):
    def decode_reached(*args, **kwargs):
        raise AssertionError("cbor2.loads ran on input the size check or scan must refuse")

    monkeypatch.setattr(protocol.decoding.cbor2, "loads", decode_reached)
    data = vector_bytes(entry)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            PARSERS[entry["message"]](data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Memory is bounded by the input, not by what it declares (2^63-byte strings, 100,000
    # levels): the scan keeps at most MAX_DEPTH frames and copies no more than the input.
    assert peak < 2 * len(data) + 64 * 1024
