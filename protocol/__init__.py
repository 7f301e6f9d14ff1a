"""The wire contract shared by firmware, gateway and cloud.

protocol/telemetry.cddl is the normative schema; this package holds its constants, the
validators the gateway runs on every payload, and the encoders of the gateway's answers.
protocol/vectors/ holds test vectors that the firmware's tests (MicroPython) and the
gateway's tests (CPython) both read.
"""

from __future__ import annotations

from importlib.resources import files

from protocol.batch import Batch, ClockEstimate, Series, parse_batch
from protocol.envelope import Envelope, encode_envelope, parse_envelope
from protocol.errors import ProtocolError
from protocol.health import HealthReport, parse_health
from protocol.replies import encode_ack, encode_error, encode_health_ack

__all__ = [
    "Batch",
    "ClockEstimate",
    "Envelope",
    "HealthReport",
    "ProtocolError",
    "Series",
    "encode_ack",
    "encode_envelope",
    "encode_error",
    "encode_health_ack",
    "parse_batch",
    "parse_envelope",
    "parse_health",
    "schema_text",
]


def schema_text() -> str:
    """The CDDL source of the contract."""
    return files("protocol").joinpath("telemetry.cddl").read_text(encoding="utf-8")
