"""Real parts for gateway tests: a nats-server with JetStream, the gateway as a process
(`ringtail gateway run`), a CoAP client on loopback, and a reader of the stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiocoap
import cbor2
import nats

BIN = Path(sys.executable).parent


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def http_get(url: str, timeout_s: float = 2) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.read()
    except OSError:
        return None


@dataclass
class NatsServer:
    store: Path
    port: int = field(default_factory=free_port)
    monitor: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        self.proc = subprocess.Popen(
            [
                str(BIN / "nats-server"),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-m",
                str(self.monitor),
                "-sd",
                str(self.store),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: http_get(f"http://127.0.0.1:{self.monitor}/healthz"),
            20,
            "nats-server to be healthy",
        )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


@dataclass
class GatewayProcess:
    workdir: Path
    nats_url: str
    settings: dict = field(default_factory=dict)
    port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    metrics_port: int = field(default_factory=free_port)
    gateway_id: str = "gw-test"
    log_level: str = "debug"
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def config_text(self) -> str:
        sections = {
            "gateway": {"id": self.gateway_id, "drain_timeout_s": 10},
            "coap": {"bind": "127.0.0.1", "port": self.port},
            "spool": {"dir": str(self.workdir / "spool")},
            "nats": {
                "url": self.nats_url,
                "reconnect_wait_s": 0.2,
                "reconnect_max_wait_s": 1.0,
                "publish_timeout_s": 2.0,
            },
            "metrics": {"bind": "127.0.0.1", "port": self.metrics_port},
        }
        for section, values in self.settings.items():
            sections.setdefault(section, {}).update(values)
        lines = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        return "\n".join(lines) + "\n"

    def start(self) -> GatewayProcess:
        config = self.workdir / "gateway.toml"
        config.write_text(self.config_text())
        self.log_path = self.workdir / f"gateway-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "ringtail"),
                    "gateway",
                    "run",
                    "--config",
                    str(config),
                    "--log-level",
                    self.log_level,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, 30, "the gateway to serve")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.log()}")
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics") is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def metrics(self) -> str:
        return (http_get(f"http://127.0.0.1:{self.metrics_port}/metrics") or b"").decode()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)

    def terminate(self, timeout_s: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)


@dataclass
class Reply:
    code: str
    body: object
    max_age: int | None


class CoapClient:
    """A CoAP client context; use inside one asyncio.run()."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ctx: aiocoap.Context | None = None

    async def __aenter__(self) -> CoapClient:
        self.ctx = await aiocoap.Context.create_client_context()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ctx.shutdown()

    async def post(
        self,
        payload: bytes,
        path: str = "t",
        content_format: int | None = 60,
        timeout_s: float = 30,
    ) -> Reply:
        msg = aiocoap.Message(
            code=aiocoap.POST, payload=payload, uri=f"coap://127.0.0.1:{self.port}/{path}"
        )
        if content_format is not None:
            msg.opt.content_format = content_format
        response = await asyncio.wait_for(self.ctx.request(msg).response, timeout_s)
        body = cbor2.loads(response.payload) if response.payload else None
        return Reply(_code_text(response.code), body, response.opt.max_age)


def _code_text(code) -> str:
    return f"{int(code) >> 5}.{int(code) & 0x1F:02d}"


def batch(device: str, boot: int, seq: int, n: int = 3, t0: int = 1_000_000) -> bytes:
    return cbor2.dumps(
        {
            0: 1,
            1: device,
            2: boot,
            3: seq,
            4: t0,
            6: [
                {
                    0: "temperature",
                    1: [i * 1000 for i in range(n)],
                    2: [20.0 + (seq + i) / 100 for i in range(n)],
                }
            ],
        },
        canonical=True,
    )


async def _stream_messages(url: str, stream: str) -> list[tuple[str, dict, bytes]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            msg = await js.get_msg(stream, seq)
            out.append((msg.subject, dict(msg.headers or {}), msg.data))
        return out
    finally:
        await nc.close()


def stream_messages(url: str, stream: str = "TELEMETRY") -> list[tuple[str, dict, bytes]]:
    return asyncio.run(_stream_messages(url, stream))


def stream_count(url: str, stream: str = "TELEMETRY") -> int:
    async def count() -> int:
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info(stream)).state.messages
        finally:
            await nc.close()

    return asyncio.run(count())


def spool_bytes(spool_dir: Path) -> int:
    return (
        sum(p.stat().st_size for p in spool_dir.glob("*") if p.is_file())
        if os.path.isdir(spool_dir)
        else 0
    )
