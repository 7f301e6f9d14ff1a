"""One pytest test per MicroPython test function in firmware/tests/t_*.py, each run under
`micropython -X heapsize=64K` (see mprun.py)."""

from __future__ import annotations

import pytest

from . import mprun

SCRIPTS = sorted(p.stem for p in mprun.SCRIPTS.glob("t_*.py"))
# t_cbor_vectors reads protocol/vectors from here (the scripts run in a temporary directory).
VECTORS = mprun.ROOT / "protocol" / "vectors"
CASES = [(s, n) for s in SCRIPTS for n in mprun.test_names(s)]


def test_every_script_has_tests() -> None:
    assert SCRIPTS
    for s in SCRIPTS:
        assert mprun.test_names(s), f"{s} has no tests"


@pytest.mark.parametrize(("script", "name"), CASES, ids=[f"{s}::{n}" for s, n in CASES])
def test_micropython(run_mp, monkeypatch: pytest.MonkeyPatch, script: str, name: str) -> None:
    monkeypatch.setenv("RINGTAIL_VECTORS", str(VECTORS))
    run_mp(script, name)
