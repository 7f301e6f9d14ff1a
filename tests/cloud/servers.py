"""ClickHouse over HTTP for tests: the chDB front as a process, a real server when
CLICKHOUSE_URL is set, and a TCP proxy that can make either unreachable on demand."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.gateway.harness import free_port, http_get, wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ChFront:
    path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ChFront:
        args = ["--path", str(self.path), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cloud.chfront", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: http_get(f"{self.url}/ping"), 30, "the chDB HTTP front")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


def real_server_database(base_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the real server: (its URL, a function that drops it). Any
    database in base_url is replaced by the fresh one."""
    from cloud.store import ServerStore

    name = f"ringtail_test_{uuid.uuid4().hex[:12]}"
    admin = ServerStore(base_url, 10)
    try:
        admin.command(f"CREATE DATABASE {name}")
    finally:
        admin.close()

    def drop() -> None:
        admin = ServerStore(base_url, 10)
        try:
            admin.command(f"DROP DATABASE IF EXISTS {name}")
        finally:
            admin.close()

    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}")), drop


class Proxy:
    """A TCP forwarder in the running event loop; `down()` closes the listener and every
    connection through it, so the target is unreachable until `up()`. With `stalled` set,
    requests still reach the target but its answers are held back: a slow server, whose
    work is done while the client times out."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self.target_host = target.hostname or "127.0.0.1"
        self.target_port = target.port or (443 if target.scheme == "https" else 8123)
        self._target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.stalled = False

    @property
    def url(self) -> str:
        """The target's URL (credentials and database kept), through this proxy."""
        netloc = self._target.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        netloc = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
        return urlunsplit(self._target._replace(netloc=netloc))

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, uw}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, answers: bool) -> None:
            try:
                while data := await r.read(65536):
                    while answers and self.stalled and not w.is_closing():
                        await asyncio.sleep(0.05)
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.close()
                self._writers.discard(w)

        await asyncio.gather(pipe(reader, uw, False), pipe(ur, writer, True))
