"""Gateway configuration: defaults that run out of the box, errors that name the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig, load_config, parse_config

RINGTAIL = Path(sys.executable).parent / "ringtail"


def test_defaults_run_beside_a_local_nats_server():
    c = GatewayConfig()
    assert (c.coap.bind, c.coap.port) == ("::", 5683)
    assert c.nats.url == "nats://127.0.0.1:4222"
    assert c.spool.dir == Path("var/gateway")
    assert c.spool.sync is True


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"spool": {"max_bytes": "lots"}}, "spool.max_bytes: expected an integer"),
        ({"spool": {"sync": "yes"}}, "spool.sync: expected true or false"),
        ({"coap": {"port": 70000}}, "coap.port: must be 0..65535"),
        ({"coap": {"prot": 5683}}, "coap.prot: unknown field"),
        ({"coaps": {}}, "unknown section [coaps]"),
        ({"gateway": {"id": "gw.1"}}, "gateway.id: 'gw.1' is not a valid id"),
        ({"nats": {"url": "http://localhost"}}, "nats.url: 'http://localhost' is not"),
        ({"spool": {"max_bytes": 100000}}, "spool.max_bytes: must hold at least two segments"),
        ({"nats": {"duplicate_window_s": 5}}, "nats.duplicate_window_s: must be at least 60"),
        ({"coap": "fast"}, "[coap] must be a table"),
    ],
)
def test_bad_fields_are_named(raw, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert message in str(caught.value)


def test_a_file_overrides_only_what_it_sets(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[gateway]\nid = "gw-2"\n[spool]\ndir = "/srv/spool"\ncommit_delay_ms = 2\n')
    c = load_config(path)
    assert c.id == "gw-2"
    assert c.spool.dir == Path("/srv/spool")
    assert c.spool.commit_delay_ms == 2.0
    assert c.coap == GatewayConfig().coap


def test_unreadable_and_invalid_files_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[spool\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_cli_refuses_a_bad_config_before_starting(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text("[coap]\nport = -1\n")
    out = subprocess.run(
        [str(RINGTAIL), "gateway", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "coap.port: must be 0..65535" in out.stderr


def test_check_config_prints_the_settings_in_effect(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[gateway]\nid = "gw-3"\n')
    out = subprocess.run(
        [str(RINGTAIL), "gateway", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "gateway.id = 'gw-3'" in out.stdout
    assert "nats.url = 'nats://127.0.0.1:4222'" in out.stdout
    assert "spool.dir = var/gateway" in out.stdout
