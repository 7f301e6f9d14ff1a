"""The device uplink end to end: firmware/tests/uplink_device.py (MicroPython, 64 KB heap,
modules from a ROMFS image as on a board) appends telemetry batches to a flash ring on the
NOR emulator and sends them with firmware/uplink.py + coap.py to the real gateway (with a
real nats-server), through a lossy link, across gateway outages and device resets; and to
an aiocoap server that answers 5.03. Retransmission timers are scaled down (ACK_TIMEOUT
100-200 ms); the code's defaults are RFC 7252's."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import aiocoap
import aiocoap.resource
import cbor2
import pytest

from tests.gateway.harness import (
    GatewayProcess,
    NatsServer,
    free_port,
    stream_count,
    stream_messages,
    wait_until,
)

from . import mprun
from .lossy import LossyProxy

FAST = {"ack_ms": 100, "retx": 4, "backoff_ms": 200, "cap_ms": 1000}


@dataclass
class Device:
    """One run of uplink_device.py; its output lines arrive in `lines` as they are printed."""

    romfs: tuple[Path, int]
    workdir: Path
    args: dict
    lines: list[list[str]] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    _reader: threading.Thread | None = None

    def start(self) -> Device:
        image, free = self.romfs
        argv = ["uplink_device"] + [f"{k}={v}" for k, v in self.args.items()]
        self.proc = subprocess.Popen(
            mprun.rom_command(image, free, "uplink_device", argv),
            env=dict(os.environ, MICROPYPATH=".frozen"),
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line.split())

    def of(self, kind: str) -> list[list[str]]:
        return [p for p in list(self.lines) if p and p[0] == kind]

    def output(self) -> str:
        return "\n".join(" ".join(p) for p in self.lines)

    def wait_for(self, kind: str, count: int = 1, timeout_s: float = 60) -> list[list[str]]:
        def enough():
            if len(self.of(kind)) >= count:
                return True
            if self.proc is not None and self.proc.poll() is not None:
                self.exit()  # every line is in now
                if len(self.of(kind)) < count:
                    raise AssertionError(f"device exited {self.proc.returncode}:\n{self.output()}")
            return len(self.of(kind)) >= count

        try:
            wait_until(enough, timeout_s, f"{count} {kind} lines")
        except TimeoutError:
            raise AssertionError(f"no {count} {kind} lines:\n{self.output()[-4000:]}") from None
        return self.of(kind)

    def finish(self, timeout_s: float = 60) -> dict[str, int]:
        """Wait for DONE and the exit; the STATS line as a dict."""
        self.wait_for("DONE", 1, timeout_s)
        assert self.exit() == 0, self.output()
        return {k: int(v) for k, v in (kv.split("=") for kv in self.of("STATS")[0][1:])}

    def exit(self, timeout_s: float = 30) -> int:
        """Wait for the process to end and for its last lines to be read."""
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout_s)
        if self._reader is not None:
            self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exit()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.exit()

    def appended(self) -> list[tuple[int, int, int]]:
        """(boot, seq, crc32) of each batch appended, in order."""
        return [(int(p[1]), int(p[2]), int(p[4])) for p in self.of("APPEND")]


@pytest.fixture
def nats(tmp_path):
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def devices(romfs, tmp_path):
    made: list[Device] = []

    def make(**args) -> Device:
        args = {"img": str(tmp_path / "flash.img"), **args}
        d = Device(romfs, tmp_path, args)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


@pytest.fixture
def gateway(tmp_path, nats):
    gw = GatewayProcess(tmp_path, nats.url)
    yield gw
    gw.stop()


def stream_batches(url: str) -> list[tuple[str, int, int, int, dict]]:
    """(device, boot, seq, crc32 of the payload, batch) of every telemetry message, in order."""
    out = []
    for subject, headers, data in stream_messages(url):
        payload = cbor2.loads(data)[4]
        b = cbor2.loads(payload)
        assert headers["Nats-Msg-Id"] == f"{b[1]}:{b[2]}:{b[3]}"
        assert subject == f"tlm.gw-test.{b[1]}"
        out.append((b[1], b[2], b[3], zlib.crc32(payload), b))
    return out


def check_exactly_once_in_order(url: str, appended: list[tuple[int, int, int]]) -> list:
    wait_until(lambda: stream_count(url) >= len(appended), 30, "the stream to fill")
    got = stream_batches(url)
    ids = [(boot, seq) for _, boot, seq, _, _ in got]
    assert len(ids) == len(set(ids)), "a batch is in the stream twice"
    assert ids == sorted(ids), "the stream is out of order for the device"
    crcs = {(boot, seq): crc for _, boot, seq, crc, _ in got}
    for boot, seq, crc in appended:
        assert crcs.get((boot, seq)) == crc, f"batch {boot}:{seq} missing or changed"
    return got


def test_lossy_link_every_batch_once_in_order(nats, gateway, devices):
    gateway.start()
    with LossyProxy(gateway.port, loss=0.3, seed=7) as proxy:
        dev = devices(fresh=1, port=proxy.port, n=30, every_ms=30, big_every=5, **FAST).start()
        stats = dev.finish(timeout_s=120)
    appended = dev.appended()
    assert len(appended) == 30
    check_exactly_once_in_order(nats.url, appended)
    # released only what the gateway acked: every release follows its ACKED line
    acked = {(int(p[1]), int(p[2])) for p in dev.of("ACKED")}
    by_ring_seq = {int(p[5]): (int(p[1]), int(p[2])) for p in dev.of("APPEND")}
    for p in dev.of("RELEASED"):
        assert by_ring_seq[int(p[2])] in acked
    assert proxy.up.dropped > 5 and proxy.down.dropped > 5, (proxy.up, proxy.down)
    assert stats["retransmits"] > 0 and stats["acked"] == 30


def test_gateway_away_then_back_drains_in_order(nats, gateway, devices):
    # 150 readings, about 1.1 KB a batch: what piles up is more than the device's heap
    dev = devices(fresh=1, port=gateway.port, n=150, every_ms=15, readings=150, **FAST).start()
    dev.wait_for("APPEND", 40)
    assert not dev.of("ACKED")
    gateway.start()
    dev.wait_for("RELEASED", 30, timeout_s=60)
    gateway.terminate()  # away again while the device keeps sampling
    dev.wait_for("APPEND", 150, timeout_s=60)
    time.sleep(1)
    held = len(dev.of("APPEND")) - len(dev.of("RELEASED"))  # the newest `held` records
    assert held > 60, held  # accumulated in flash
    gateway.start()
    stats = dev.finish(timeout_s=120)
    appended = dev.appended()
    bytes_held = sum(int(p[6]) for p in dev.of("APPEND")[-held:])
    assert bytes_held > 64 * 1024, bytes_held
    check_exactly_once_in_order(nats.url, appended)
    assert stats["acked"] == 150
    # the backlog runs into the gateway's rate limit: 4.29 + Max-Age, waited out, not poison
    assert any(p[1] == "4.29" for p in dev.of("BACKOFF")) and stats["quarantined"] == 0


def test_device_reset_mid_uplink_loses_nothing(nats, gateway, devices):
    gateway.start()
    appended: list[tuple[int, int, int]] = []
    with LossyProxy(gateway.port, loss=0.3, seed=3) as proxy:
        boots = []
        left: set[tuple[int, int]] = set()  # records in the ring after the last kill
        for run, (n, kill_after) in enumerate(((30, 6), (20, 4), (10, 0))):
            dev = devices(fresh=int(run == 0), port=proxy.port, n=n, every_ms=40, **FAST)
            dev.args["exit"] = "drained" if not kill_after else "never"
            dev.start()
            boots.append(int(dev.wait_for("BOOT")[0][1]))
            if run:
                # the oldest unreleased record of the previous boot goes first, same identity
                first = dev.wait_for("ACKED")[0]
                assert int(first[1]) < boots[-1] or not left, (first, left)
            if kill_after:
                dev.wait_for("RELEASED", kill_after, timeout_s=60)
                dev.kill()
                appended += dev.appended()
                left = check_ring_after_kill(devices, dev)
            else:
                dev.finish(timeout_s=120)
                appended += dev.appended()
    check_exactly_once_in_order(nats.url, appended)
    assert boots == sorted(boots) and len(set(boots)) == 3


def check_ring_after_kill(devices, dev: Device) -> set[tuple[int, int]]:
    """After a kill: every record not reported released is still in the ring (the one whose
    release was under way at the kill may be gone, and then it is in the gateway's hands)."""
    inspect = devices(mode="inspect").start()
    assert inspect.exit() == 0, inspect.output()
    live = {(int(p[1]), int(p[2])) for p in inspect.of("LIVE")}
    released = {(int(p[1]), int(p[2])) for p in dev.of("RELEASED")}
    boot = int(dev.of("BOOT")[0][1])
    records = {(boot, int(p[5])) for p in dev.of("APPEND")}
    assert not live & released, "a released record came back"
    missing = records - released - live
    acked = {(int(p[1]), int(p[2])) for p in dev.of("ACKED")}
    by_ring = {(boot, int(p[5])): (int(p[1]), int(p[2])) for p in dev.of("APPEND")}
    assert len(missing) <= 1 and all(by_ring[m] in acked for m in missing), missing
    return live


class BusyServer:
    """An aiocoap server on loopback whose /t answers 5.03 + Max-Age to the first `busy`
    requests, then telemetry-acks. Records when each request arrived (monotonic s)."""

    def __init__(self, busy: int, max_age_s: int) -> None:
        self.busy = busy
        self.max_age_s = max_age_s
        self.port = free_port(socket.SOCK_DGRAM)
        self.arrivals: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def __enter__(self) -> BusyServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        server = self

        class Telemetry(aiocoap.resource.Resource):
            async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
                server.arrivals.append(time.monotonic())
                now = time.time_ns() // 1000
                if len(server.arrivals) <= server.busy:
                    body = {0: 1, 1: 0xA3, 2: "busy", 3: now}
                    msg = aiocoap.Message(
                        code=aiocoap.SERVICE_UNAVAILABLE, payload=cbor2.dumps(body)
                    )
                    msg.opt.max_age = server.max_age_s
                else:
                    b = cbor2.loads(request.payload)
                    last = b[3] + sum(len(s[1]) for s in b[6]) - 1
                    body = {0: 1, 1: b[2], 2: last, 3: now}
                    msg = aiocoap.Message(code=aiocoap.CHANGED, payload=cbor2.dumps(body))
                msg.opt.content_format = 60
                return msg

        site = aiocoap.resource.Site()
        site.add_resource(["t"], Telemetry())
        ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", self.port))
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await ctx.shutdown()


def test_503_max_age_is_honoured(devices):
    with BusyServer(busy=2, max_age_s=2) as server:
        dev = devices(fresh=1, port=server.port, n=2, every_ms=10, ack_ms=200, retx=4)
        stats = dev.start().finish(timeout_s=60)
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    assert len(server.arrivals) == 4, server.arrivals  # 5.03, 5.03, then the two batches
    assert 2.0 <= gaps[0] <= 2.2 + 1.0 and 2.0 <= gaps[1] <= 2.2 + 1.0, gaps
    assert stats["backoffs"] == 2 and stats["acked"] == 2
    waits = [int(p[2]) for p in dev.of("BACKOFF")]
    assert all(2000 <= w <= 2200 for w in waits), waits


def test_schema_invalid_batch_is_quarantined_neighbours_arrive(nats, gateway, devices):
    gateway.start()
    dev = devices(fresh=1, port=gateway.port, n=7, readings=5, bad="3", **FAST).start()
    stats = dev.finish(timeout_s=60)
    appended = dev.appended()
    bad = appended[3]
    good = appended[:3] + appended[4:]
    got = check_exactly_once_in_order(nats.url, good)
    assert (bad[0], bad[1]) not in {(b, s) for _, b, s, _, _ in got}
    (q,) = dev.of("QUARANTINED")
    assert int(q[3]) == 5 and q[4] == "4.22", q
    assert "metric" in " ".join(q[5:])
    assert stats["quarantined"] == 5 and stats["acked"] == 6


def test_clock_estimate_matches_wall_time(nats, gateway, devices):
    gateway.start()
    dev = devices(fresh=1, port=gateway.port, n=6, every_ms=100, health=1, **FAST)
    dev.start().finish(timeout_s=60)
    assert dev.of("HEALTH") == [["HEALTH", "True", "2.04"]]
    (c,) = dev.of("CLOCK")
    device_us, wall_us, offset_us, unc_us = map(int, c[1:])
    assert abs(wall_us - (device_us + offset_us)) <= unc_us, wall_us - device_us - offset_us
    assert 1000 <= unc_us <= 50_000, unc_us
    # later batches carry the estimate (CDDL key 5), as the agent puts it
    got = check_exactly_once_in_order(nats.url, dev.appended())
    carried = [b[5] for _, _, _, _, b in got if 5 in b]
    assert carried, "no batch carried a clock estimate"
    assert all(abs(o - offset_us) <= u + unc_us for o, u in carried), carried
