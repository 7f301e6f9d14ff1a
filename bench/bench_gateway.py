"""Gateway throughput against a bare CoAP server, measured in the same run.

    just bench gateway                      # 20 s per server
    RINGTAIL_BENCH_S=300 just bench gateway # the 5-minute run, with memory sampled

The reference is aiocoap + cbor2 answering 2.04 with no durable work (a stock
aiocoap.resource.Site, with only the gateway's bound on aiocoap's duplicate detection, so
that its memory does not grow for 247 s); the gateway does all of it (validate, spool
with fdatasync, publish to JetStream). Both get the same load:
RINGTAIL_BENCH_DEVICES (50) simulated devices, each posting 64-reading batches back to back
over loopback UDP and waiting for each answer. Both servers run for the whole benchmark and
take the load in turns, slices of about SLICE_S seconds (order alternating), so that other
work on a shared machine weighs on both alike; between slices the gateway publishes what it
still holds. Reported: batches/s and readings/s of each, their ratio, the CPU each process
used during its slices (so a saturated load generator shows), the gateway's publish backlog
after its slices, and its resident memory at eleven points across its life.

The load generator speaks CoAP itself (confirmable POST, piggybacked or separate
responses, RFC 7252 retransmission) on one UDP socket per device, in the benchmark's own
process. One socket per device is what real devices look like to the server (each its own
endpoint, so its own Message ID space: one shared socket would reuse Message IDs within
EXCHANGE_LIFETIME after 65536 requests, and the server would answer them from its
duplicate cache). Hand-encoding keeps the generator at a fraction of a core, so the
servers, not the generator, are what is measured; an aiocoap client context costs about
as much CPU per request as the bare server and saturated a core first.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiocoap
import aiocoap.resource
import cbor2

from gateway.coap import bound_duplicate_memory
from gateway.config import CoapConfig
from tests.gateway.harness import GatewayProcess, NatsServer, free_port, wait_until

DEVICES = int(os.environ.get("RINGTAIL_BENCH_DEVICES", "50"))
DURATION_S = float(os.environ.get("RINGTAIL_BENCH_S", "20"))
SLICE_S = 5.0
READINGS = 64

_SERIES = [
    {
        0: "temperature",
        1: [i * 1_000_000 for i in range(READINGS)],
        2: [21.0 + i / 100 for i in range(READINGS)],
    }
]


def _payload(device: str, seq: int) -> bytes:
    return cbor2.dumps({0: 1, 1: device, 2: 1, 3: seq, 4: 0, 6: _SERIES}, canonical=True)


# --- the load generator: a minimal CoAP client (RFC 7252), one socket per device ------------

_CON, _NON, _ACK, _RST = 0, 1, 2, 3
_POST, _CHANGED = 0x02, 0x44
# Uri-Path "t" (option 11), then Content-Format 60 (option 12, delta 1), then the payload.
_OPTIONS = b"\xb1t\x11\x3c\xff"
_ACK_TIMEOUT_S, _ACK_RANDOM_FACTOR, _MAX_RETRANSMIT = 2.0, 1.5, 4
_RESPONSE_TIMEOUT_S = 10.0  # after an empty ACK: how long to wait for the separate response


class _Device(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.mid = random.randrange(0x10000)
        self.token = 0
        self.waiting: asyncio.Future[int] | None = None
        self.acked = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        if len(data) < 4 or data[0] >> 6 != 1:
            return
        mtype, tkl, code = (data[0] >> 4) & 3, data[0] & 0xF, data[1]
        (mid,) = struct.unpack_from("!H", data, 2)
        token = data[4 : 4 + tkl]
        if mtype == _CON:  # a separate response: acknowledge it whatever it is
            assert self.transport is not None
            self.transport.sendto(struct.pack("!BBH", 0x60, 0, mid))
        fut = self.waiting
        if fut is None or fut.done():
            return
        if mtype == _ACK and mid == self.mid and code == 0:
            self.acked = True  # the response will come separately
        elif mtype == _RST and mid == self.mid:
            fut.set_result(-1)
        elif code and token == struct.pack("!I", self.token):
            fut.set_result(code)

    async def post(self, payload: bytes) -> int:
        """The response code, or -1 (reset) or 0 (no response)."""
        assert self.transport is not None
        self.mid = (self.mid + 1) & 0xFFFF
        self.token = (self.token + 1) & 0xFFFFFFFF
        self.acked = False
        msg = struct.pack("!BBHI", 0x44, _POST, self.mid, self.token) + _OPTIONS + payload
        fut = self.waiting = asyncio.get_running_loop().create_future()
        timeout = _ACK_TIMEOUT_S * random.uniform(1, _ACK_RANDOM_FACTOR)
        for _ in range(_MAX_RETRANSMIT + 1):
            self.transport.sendto(msg)
            done, _ = await asyncio.wait((fut,), timeout=timeout)
            if done or self.acked:
                break
            timeout *= 2
        if not fut.done():
            await asyncio.wait((fut,), timeout=_RESPONSE_TIMEOUT_S)
        return fut.result() if fut.done() else 0


async def _load(port: int, duration_s: float, seqs: list[int] | None = None) -> tuple[int, int]:
    """(batches acknowledged with 2.04, requests answered otherwise or not at all) within
    duration_s, from DEVICES concurrent devices each waiting for its answer. A request
    still open at the deadline counts as neither. `seqs` holds each device's next sequence
    number, carried from one call to the next (a batch re-sent would only be acknowledged
    again, not stored)."""
    loop = asyncio.get_running_loop()
    done = failed = 0
    deadline = time.monotonic() + duration_s
    seqs = [0] * DEVICES if seqs is None else seqs

    async def device(i: int) -> None:
        nonlocal done, failed
        transport, dev = await loop.create_datagram_endpoint(
            _Device, remote_addr=("127.0.0.1", port), family=socket.AF_INET
        )
        seq = seqs[i]
        try:
            while time.monotonic() < deadline:
                post = asyncio.ensure_future(dev.post(_payload(f"bench-{i}", seq)))
                finished, _ = await asyncio.wait((post,), timeout=deadline - time.monotonic())
                if not finished:
                    post.cancel()
                    break
                if post.result() == _CHANGED:
                    done += 1
                    seq += READINGS
                else:
                    failed += 1
        finally:
            seqs[i] = seq
            transport.close()

    await asyncio.gather(*(device(i) for i in range(DEVICES)))
    return done, failed


# --- the reference server ---------------------------------------------------------------------


class _Bare(aiocoap.resource.Resource):
    async def render_post(self, request):
        cbor2.loads(request.payload)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=cbor2.dumps({0: 1}))


async def _serve_bare(port: int) -> None:
    site = aiocoap.resource.Site()
    site.add_resource(["t"], _Bare())
    ctx = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", port), transports=["udp6"]
    )
    # The gateway's bound on aiocoap's duplicate detection, which otherwise keeps every
    # request for 247 s: without it this server would slow down over a long run as its
    # heap grows, flattering the gateway.
    bound_duplicate_memory(ctx, CoapConfig().max_exchanges_tracked)
    await asyncio.Event().wait()


# --- measuring ----------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Tally:
    """One server's batches, failures and CPU over its slices."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {"load generator": os.getpid(), **pids}
        self.seqs = [0] * DEVICES
        self.batches = self.failed = 0
        self.seconds = 0.0
        self.cpu_s = dict.fromkeys(self.pids, 0.0)

    def run(self, port: int, duration_s: float) -> None:
        before = {name: _cpu_s(pid) for name, pid in self.pids.items()}
        started = time.monotonic()
        ok, bad = asyncio.run(_load(port, duration_s, self.seqs))
        self.seconds += time.monotonic() - started
        for name, pid in self.pids.items():
            self.cpu_s[name] += _cpu_s(pid) - before[name]
        self.batches += ok
        self.failed += bad

    def row(self, name: str) -> str:
        cpu = ", ".join(f"{k} {100 * v / self.seconds:.0f}" for k, v in self.cpu_s.items())
        n = self.batches
        return (
            f"| {name} | {n / DURATION_S:.0f} | {n * READINGS / DURATION_S:.0f} "
            f"| {self.failed} | {cpu} |"
        )


def _sample_rss(pid: int, every_s: float, stop: threading.Event, out: list[int]) -> None:
    while True:
        out.append(_rss_kib(pid))
        if stop.wait(every_s):
            out.append(_rss_kib(pid))
            return


def _unacked(gw: GatewayProcess) -> int:
    for line in gw.metrics().splitlines():
        if line.startswith("ringtail_gateway_spool_unacked_records "):
            return int(float(line.split()[1]))
    return -1


def main() -> None:
    rounds = max(1, round(DURATION_S / SLICE_S))
    slice_s = DURATION_S / rounds
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bare_port = free_port(socket.SOCK_DGRAM)
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_gateway", "--bare", str(bare_port)]
        )
        nats_server = NatsServer(tmp_path / "nats").start()
        gw = GatewayProcess(
            tmp_path,
            nats_server.url,
            {"coap": {"rate_per_s": 1e6, "rate_burst": 1_000_000}},
            log_level="info",  # debug logs a line per request: not what production runs
        ).start()
        rss: list[int] = []
        stop = threading.Event()
        sampler = threading.Thread(
            target=_sample_rss, args=(gw.proc.pid, 2 * DURATION_S / 10, stop, rss), daemon=True
        )
        bare_tally = _Tally({"bare server": bare.pid})
        gw_tally = _Tally({"gateway": gw.proc.pid, "nats-server": nats_server.proc.pid})
        backlog = 0
        try:
            time.sleep(1.0)
            sampler.start()
            for r in range(rounds):
                turns = [(bare_tally, bare_port), (gw_tally, gw.port)]
                for tally, port in turns if r % 2 == 0 else turns[::-1]:
                    tally.run(port, slice_s)
                    if tally is gw_tally:
                        backlog = max(backlog, _unacked(gw))
                        wait_until(
                            lambda: _unacked(gw) == 0, 120, "the gateway to publish everything"
                        )
            stop.set()
            sampler.join()
        finally:
            bare.terminate()
            bare.wait()
            gw.stop()
            nats_server.stop()
    print(
        f"{DEVICES} devices, {READINGS} readings per batch, {DURATION_S:.0f} s per server "
        f"in {rounds} turns each"
    )
    print("| server | batches/s | readings/s | failed or timed out | CPU, % of one core |")
    print("|---|---|---|---|---|")
    print(bare_tally.row("bare aiocoap + cbor2"))
    print(gw_tally.row("ringtail gateway"))
    print(f"gateway / bare: {gw_tally.batches / max(bare_tally.batches, 1):.2f}x")
    print(f"gateway publish backlog after a turn, at most: {backlog} batches")
    every = 2 * DURATION_S / 10
    print(f"gateway RSS, KiB, every {every:.0f} s of its life: " + ", ".join(map(str, rss)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare"]:
        asyncio.run(_serve_bare(int(sys.argv[2])))
    else:
        main()
