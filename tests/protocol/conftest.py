from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pycddl
import pytest

import protocol
from protocol import parse_batch, parse_health

VECTORS = Path(protocol.__file__).parent / "vectors"
PARSERS = {"telemetry-batch": parse_batch, "health-report": parse_health}


def load_manifest() -> list[dict]:
    return json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))


def vector_bytes(entry: dict) -> bytes:
    return (VECTORS / entry["file"]).read_bytes()


@cache
def cddl_schema(root: str) -> pycddl.Schema:
    """pycddl validates against the first rule, so each root gets a schema of its own."""
    return pycddl.Schema(f"root = {root}\n" + protocol.schema_text())


def by_kind(kind: str) -> list:
    return [
        pytest.param(e, id=e["name"]) for e in load_manifest() if e["file"].startswith(kind + "/")
    ]
