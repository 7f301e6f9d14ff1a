"""firmware/cbor.py under CPython, against the two references it must agree with: the
gateway's scan (protocol/cbor_scan.py) on what is refused, with the same reason at the same
offset, and cbor2 (canonical=True, what made protocol/vectors) on the bytes of every value.

The MicroPython side of these checks runs in t_cbor.py and t_cbor_vectors.py under the
64 KB heap; this file covers what that heap cannot hold (whole 100 KB and 16 KB files) and
what needs hypothesis.
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.cbor_scan import CborRejected, scan
from protocol.constants import MAX_DEPTH

from . import mprun

VECTORS = mprun.ROOT / "protocol" / "vectors"
ENTRIES = json.loads((VECTORS / "vectors.json").read_text())


def _load_firmware_cbor() -> Any:
    # The device module by its path, as the device imports it: firmware/ is not a package.
    spec = importlib.util.spec_from_file_location("fw_cbor", mprun.FIRMWARE / "cbor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fw = _load_firmware_cbor()


def _scan_verdict(data: bytes) -> tuple[str, int] | None:
    try:
        scan(data, MAX_DEPTH)
    except CborRejected as e:
        return e.reason, e.offset
    return None


def _fw_verdict(data: bytes) -> tuple[str, int] | None:
    try:
        fw.check(data, fw.Decoder())
    except fw.CborError as e:
        return e.reason, e.offset
    return None


def test_depth_limit_is_the_gateways() -> None:
    assert fw.MAX_DEPTH == MAX_DEPTH


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_decoder_refuses_what_the_scan_refuses_for_the_same_reason(entry: dict) -> None:
    data = (VECTORS / entry["file"]).read_bytes()
    assert _fw_verdict(data) == _scan_verdict(data)


def test_nesting_100000_is_refused_within_its_first_nine_bytes() -> None:
    # t_cbor_vectors.py can hold only a 16 KB prefix of this file; the whole file is refused
    # for the same reason at the same byte, so the prefix decides.
    data = (VECTORS / "invalid" / "nesting-100000.cbor").read_bytes()
    assert len(data) == 100_001
    assert _fw_verdict(data) == ("nesting deeper than 8 levels", 8)
    assert _fw_verdict(data[:16384]) == ("nesting deeper than 8 levels", 8)


def test_oversize_is_well_formed_and_its_prefix_is_truncated() -> None:
    # The other file larger than the MicroPython test's buffer (see t_cbor_vectors.py).
    data = (VECTORS / "invalid" / "oversize.cbor").read_bytes()
    assert len(data) == 16385
    assert _fw_verdict(data) is None
    verdict = _fw_verdict(data[:16384])
    assert verdict is not None and verdict[0].startswith("truncated")


@pytest.mark.parametrize(
    "entry",
    [e for e in ENTRIES if e["expect"] == "2.04"],
    ids=[e["name"] for e in ENTRIES if e["expect"] == "2.04"],
)
def test_valid_vector_round_trips_through_objects(entry: dict) -> None:
    data = (VECTORS / entry["file"]).read_bytes()
    obj = fw.loads(data)
    assert fw.dumps(obj, len(data)) == data
    assert _same(obj, cbor2.loads(data))


def _same(a: Any, b: Any) -> bool:
    """Equal values, floats compared by bits (NaN equals NaN, -0.0 differs from 0.0)."""
    if isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, float) and isinstance(b, float)):
            return False
        if math.isnan(a) and math.isnan(b):
            return True
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


_INTS = st.integers(min_value=-(2**64), max_value=2**64 - 1)
_SCALARS = (
    _INTS
    | st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
    | st.floats(width=32)
    | st.floats(width=16)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.booleans()
    | st.none()
)
_KEYS = st.integers(min_value=-(2**64), max_value=2**64 - 1) | st.text(max_size=8)


_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=24,
)


def _depth(value: Any) -> int:
    """Nesting as the scan counts it: levels of non-empty containers."""
    if isinstance(value, list) and value:
        return 1 + max(_depth(v) for v in value)
    if isinstance(value, dict) and value:
        return 1 + max(max(_depth(k), _depth(v)) for k, v in value.items())
    return 0


@settings(max_examples=500, deadline=None)
@given(_VALUES)
def test_encoder_agrees_with_cbor2_canonical(value: Any) -> None:
    want = cbor2.dumps(value, canonical=True)
    if _depth(value) > MAX_DEPTH:
        # Deeper than the gateway accepts: the device refuses to write it at all.
        with pytest.raises(fw.CborError, match="nesting deeper"):
            fw.dumps(value, len(want) + 16)
    else:
        assert fw.dumps(value, len(want) + 16) == want


@settings(max_examples=500, deadline=None)
@given(_VALUES)
def test_decoder_agrees_with_cbor2_on_what_cbor2_writes(value: Any) -> None:
    data = cbor2.dumps(value, canonical=True)
    if _depth(value) > MAX_DEPTH:
        verdict = _fw_verdict(data)
        assert verdict is not None and verdict == _scan_verdict(data)
        return
    assert _fw_verdict(data) is None
    assert _same(fw.loads(data), cbor2.loads(data))


@settings(max_examples=200, deadline=None)
@given(st.floats(width=32, allow_nan=False))
def test_a_binary32_value_never_needs_nine_bytes(x: float) -> None:
    # What the boards hold (module docstring): every binary32 reading fits in 3 or 5 bytes.
    assert len(fw.dumps(x)) in (3, 5)


_SEEDS = [
    (VECTORS / e["file"]).read_bytes()
    for e in ENTRIES
    if (VECTORS / e["file"]).stat().st_size <= 1024
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A vector with a few bytes changed, inserted, removed, or cut: mostly not CBOR."""
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        at = draw(st.integers(0, len(data)))
        if op == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and at < len(data):
            del data[at]
        elif op == "cut":
            del data[at:]
    return bytes(data)


@settings(max_examples=1500, deadline=None)
@given(_mutated() | st.binary(max_size=40))
def test_decoder_and_scan_agree_on_hostile_bytes(data: bytes) -> None:
    # Same verdict, same reason, same byte, on anything. (A map of more than fw.MAX_KEYS
    # keys is the one thing only the device refuses; these inputs are too small for it.)
    assert _fw_verdict(data) == _scan_verdict(data)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=12))
def test_utf8_checks_agree_with_cpythons_strict_decoder(raw: bytes) -> None:
    # The scan decodes text with CPython's strict UTF-8; the device checks by hand.
    data = bytes([0x60 | len(raw)]) + raw
    assert _fw_verdict(data) == _scan_verdict(data)


@pytest.mark.parametrize("major", range(8))
def test_argument_forms_agree_with_the_scan_at_every_boundary(major: int) -> None:
    # Each width with the arguments around the least it may carry, followed by enough
    # zero bytes for any string or container it declares.
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        for least in (0, 23, 24, 0x100, 0x10000, 0x100000000):
            for arg in (least - 1, least, least + 1):
                if not 0 <= arg < 1 << (8 * width):
                    continue
                head = bytes([major << 5 | info]) + arg.to_bytes(width, "big")
                body = bytes(2 * arg) if arg < 1000 else b""
                data = head + body
                assert _fw_verdict(data) == _scan_verdict(data), data.hex()


def test_maps_beyond_the_key_table_are_the_one_difference() -> None:
    data = cbor2.dumps({k: None for k in range(fw.MAX_KEYS + 1)}, canonical=True)
    assert _scan_verdict(data) is None
    verdict = _fw_verdict(data)
    assert verdict is not None and verdict[0] == f"more than {fw.MAX_KEYS} map keys open at once"
