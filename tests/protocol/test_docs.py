"""docs/protocol.md, protocol/constants.py and the CDDL say the same thing."""

from __future__ import annotations

import re

from protocol import batch, health, schema_text
from protocol.docs import main as docs_main
from protocol.docs import parse_rules


def test_generated_reference_is_up_to_date():
    assert docs_main(["--check"]) == 0, "run `python -m protocol.docs`"


def test_every_map_member_of_the_schema_is_documented():
    cddl = schema_text()
    member_lines = [ln for ln in cddl.splitlines() if re.match(r"^\s*(\?\s*)?\d+\s*=>", ln)]
    documented = sum(len(r.members) for r in parse_rules(cddl))
    assert documented == len(member_lines)


def test_validator_keys_match_the_schema():
    rules = {r.name: {m.key: m.name for m in r.members} for r in parse_rules(schema_text())}
    assert rules["telemetry-batch"] == batch._BATCH_KEYS
    assert rules["series"] == batch._SERIES_KEYS
    assert rules["health-report"] == health._KEYS


def test_optional_members_are_the_validators_optional_keys():
    rules = {r.name: r for r in parse_rules(schema_text())}
    optional = {m.key for m in rules["telemetry-batch"].members if m.optional}
    assert optional == set(batch._BATCH_KEYS) - batch._BATCH_REQUIRED
    optional = {m.key for m in rules["health-report"].members if m.optional}
    assert optional == set(health._KEYS) - health._REQUIRED
