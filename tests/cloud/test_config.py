"""Writer configuration (file, then environment; errors name the field) and the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cloud.config import ConfigError, load_config
from cloud.migrate import migrate
from cloud.schema import LATEST_VERSION
from cloud.store import ChdbStore
from tests.gateway.harness import BIN


def test_defaults_read_local_nats_and_keep_chdb_under_var():
    c = load_config(None, env={})
    assert c.nats.url == "nats://127.0.0.1:4222"
    assert c.clickhouse.url == ""
    assert c.clickhouse.chdb_path == Path("var/clickhouse")


def test_environment_overrides_the_file(tmp_path):
    f = tmp_path / "w.toml"
    f.write_text('[nats]\nurl = "nats://file:4222"\nfetch_messages = 64\n')
    env = {
        "NATS_URL": "nats://env:4222",
        "CLICKHOUSE_URL": "http://ch:8123/db",
        "RINGTAIL_CHDB_PATH": "/data/ch",
    }
    c = load_config(f, env=env)
    assert (c.nats.url, c.nats.fetch_messages) == ("nats://env:4222", 64)
    assert c.clickhouse.url == "http://ch:8123/db"
    assert c.clickhouse.chdb_path == Path("/data/ch")


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[nats]\nspeed = 3\n", {}, "nats.speed: unknown field"),
        ("[nats]\nfetch_messages = '9'\n", {}, "nats.fetch_messages: expected an integer"),
        ("[nats]\nfetch_messages = 0\n", {}, "nats.fetch_messages: must be 1..10000"),
        ("[clickhouse]\nmax_rows_per_insert = 10\n", {}, "clickhouse.max_rows_per_insert"),
        ("[wat]\n", {}, "unknown section [wat]"),
        ("[nats\n", {}, "not valid TOML"),
        ("", {"CLICKHOUSE_URL": "tcp://x:9000"}, "clickhouse.url: 'tcp://x:9000' is not"),
        ("", {"NATS_URL": "http://x"}, "nats.url: 'http://x' is not a nats:// URL"),
    ],
)
def test_errors_name_the_field(tmp_path, text, env, message):
    f = tmp_path / "w.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(f, env=env)
    assert message in str(e.value)


def test_cli_rejects_a_bad_config_naming_the_field(tmp_path):
    f = tmp_path / "w.toml"
    f.write_text("[clickhouse]\ntimeout_s = -1\n")
    r = subprocess.run(
        [str(BIN / "ringtail"), "cloud", "writer", "--config", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "clickhouse.timeout_s: must be more than 0" in r.stderr


def test_cli_refuses_a_database_newer_than_the_code(tmp_path):
    store = ChdbStore(tmp_path / "ch")
    try:
        migrate(store)
        store.command(
            f"INSERT INTO schema_migrations (version, name) VALUES ({LATEST_VERSION + 5}, 'future')"
        )
    finally:
        store.close()
    r = subprocess.run(
        [str(BIN / "ringtail"), "cloud", "writer"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": str(BIN),
            "RINGTAIL_CHDB_PATH": str(tmp_path / "ch"),
            "NATS_URL": "nats://127.0.0.1:1",
        },
    )
    assert r.returncode == 3, r.stderr
    assert f"schema version {LATEST_VERSION + 5}, newer than this code" in r.stderr
