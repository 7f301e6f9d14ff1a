"""Gateway throughput against a bare CoAP server, measured in the same run.

    just bench gateway                      # 20 s per server
    RINGTAIL_BENCH_S=300 just bench gateway # the 5-minute run, with memory sampled

The reference is aiocoap + cbor2 answering 2.04 with no durable work; the gateway does all
of it (validate, spool with fdatasync, publish to JetStream). Both get the same load: many
simulated devices, each posting 64-reading batches back to back over loopback UDP. Reported:
batches/s and readings/s of each, their ratio, and the gateway's resident memory at the
eleven points across its run (flat memory means no growth across the run).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiocoap
import aiocoap.error
import aiocoap.resource
import cbor2

from tests.gateway.harness import GatewayProcess, NatsServer, free_port, wait_until

DEVICES = int(os.environ.get("RINGTAIL_BENCH_DEVICES", "50"))
DURATION_S = float(os.environ.get("RINGTAIL_BENCH_S", "20"))
READINGS = 64


def _payload(device: str, seq: int) -> bytes:
    return cbor2.dumps(
        {
            0: 1,
            1: device,
            2: 1,
            3: seq,
            4: 0,
            6: [
                {
                    0: "temperature",
                    1: [i * 1_000_000 for i in range(READINGS)],
                    2: [21.0 + i / 100 for i in range(READINGS)],
                }
            ],
        },
        canonical=True,
    )


async def _load(port: int, duration_s: float) -> tuple[int, int]:
    """(batches acknowledged with 2.04, requests that failed or timed out) within
    duration_s, from DEVICES concurrent devices each waiting for its answer."""
    ctx = await aiocoap.Context.create_client_context()
    done = failed = 0
    deadline = time.monotonic() + duration_s

    async def device(i: int) -> None:
        nonlocal done, failed
        seq = 0
        while (left := deadline - time.monotonic()) > 0:
            msg = aiocoap.Message(
                code=aiocoap.POST,
                payload=_payload(f"bench-{i}", seq),
                uri=f"coap://127.0.0.1:{port}/t",
            )
            msg.opt.content_format = 60
            try:
                response = await asyncio.wait_for(ctx.request(msg).response, min(left, 10))
            except (TimeoutError, aiocoap.error.Error):
                failed += 1
                continue
            if response.code == aiocoap.CHANGED:
                done += 1
                seq += READINGS
            else:
                failed += 1

    await asyncio.gather(*(device(i) for i in range(DEVICES)))
    await ctx.shutdown()
    return done, failed


class _Bare(aiocoap.resource.Resource):
    async def render_post(self, request):
        cbor2.loads(request.payload)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=cbor2.dumps({0: 1}))


async def _serve_bare(port: int) -> None:
    site = aiocoap.resource.Site()
    site.add_resource(["t"], _Bare())
    await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port), transports=["udp6"])
    await asyncio.Event().wait()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _sample_rss(pid: int, out: list[int]) -> None:
    for _ in range(11):
        out.append(_rss_kib(pid))
        time.sleep(DURATION_S / 10)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bare_port = free_port()
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_gateway", "--bare", str(bare_port)]
        )
        time.sleep(1.5)
        try:
            bare_batches, bare_failed = asyncio.run(_load(bare_port, DURATION_S))
        finally:
            bare.terminate()
            bare.wait()
        nats_server = NatsServer(tmp_path / "nats").start()
        gw = GatewayProcess(
            tmp_path, nats_server.url, {"coap": {"rate_per_s": 1e6, "rate_burst": 1_000_000}}
        ).start()
        rss: list[int] = []
        sampler = threading.Thread(target=_sample_rss, args=(gw.proc.pid, rss), daemon=True)
        try:
            sampler.start()
            gw_batches, gw_failed = asyncio.run(_load(gw.port, DURATION_S))
            sampler.join()
            wait_until(
                lambda: "ringtail_gateway_spool_unacked_records 0.0" in gw.metrics(),
                120,
                "the gateway to publish everything",
            )
        finally:
            gw.stop()
            nats_server.stop()
    print(f"{DEVICES} devices, {READINGS} readings per batch, {DURATION_S:.0f} s each")
    print("| server | batches/s | readings/s | failed or timed out |")
    print("|---|---|---|---|")
    rows = (
        ("bare aiocoap + cbor2", bare_batches, bare_failed),
        ("ringtail gateway", gw_batches, gw_failed),
    )
    for name, n, bad in rows:
        print(f"| {name} | {n / DURATION_S:.0f} | {n * READINGS / DURATION_S:.0f} | {bad} |")
    print(f"gateway / bare: {gw_batches / max(bare_batches, 1):.2f}x")
    print("gateway RSS, KiB, every tenth of the run: " + ", ".join(map(str, rss)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare"]:
        asyncio.run(_serve_bare(int(sys.argv[2])))
    else:
        main()
