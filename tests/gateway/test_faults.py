"""The gateway under faults: NATS down, the gateway killed, hostile input on the wire."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time

import aiocoap.error
import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import parse_batch, parse_envelope

from .harness import CoapClient, batch, stream_count, stream_messages, wait_until

# The issue asks for a minute; RINGTAIL_OUTAGE_S shortens it for a quick local run.
OUTAGE_S = float(os.environ.get("RINGTAIL_OUTAGE_S", "60"))


def _stored_keys(url: str) -> list[str]:
    keys = []
    for _subject, headers, data in stream_messages(url):
        b = parse_batch(parse_envelope(data).payload)
        assert headers["Nats-Msg-Id"] == b.msg_id
        keys.append(b.msg_id)
    return keys


def test_nats_down_then_back_loses_nothing_acknowledged(nats_server, gateway_factory):
    gw = gateway_factory(
        nats_server.url, spool={"max_bytes": 1 << 20, "segment_bytes": 1 << 16}
    ).start()
    acked: list[str] = []
    codes: list[str] = []

    async def devices(duration_s: float) -> None:
        async def one(name: str) -> None:
            seq = len([k for k in acked if k.startswith(name + ":")]) * 3
            async with CoapClient(gw.port) as client:
                deadline = time.monotonic() + duration_s
                while time.monotonic() < deadline:
                    reply = await client.post(batch(name, 1, seq))
                    codes.append(reply.code)
                    if reply.code == "2.04":
                        acked.append(f"{name}:1:{seq}")
                        seq += 3
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(one(f"dev-{i}") for i in range(3)))

    asyncio.run(devices(2))  # NATS up
    nats_server.stop()
    asyncio.run(devices(OUTAGE_S))  # NATS down: the spool takes it all
    assert set(codes) == {"2.04"}, "5.03 before the spool bound was reached"
    nats_server.start()  # same port, same store
    asyncio.run(devices(2))
    wait_until(
        lambda: stream_count(nats_server.url) == len(acked),
        60,
        f"{len(acked)} acknowledged batches in the stream",
    )
    keys = _stored_keys(nats_server.url)
    assert sorted(keys) == sorted(acked)
    assert len(keys) == len(set(keys))


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(nats_server, gateway_factory):
    rng = random.Random(20261203)
    gw = gateway_factory(nats_server.url)
    acked: list[str] = []
    seq = {f"dev-{i}": 0 for i in range(3)}
    cuts = 20

    async def send_until_killed(kill_after_s: float) -> None:
        async def one(name: str) -> None:
            async with CoapClient(gw.port) as client:
                while True:
                    try:
                        reply = await client.post(batch(name, 1, seq[name]), timeout_s=2)
                    except (TimeoutError, OSError, aiocoap.error.Error):
                        return  # the gateway is gone; an unacknowledged batch is retried
                    if reply.code == "2.04":
                        acked.append(f"{name}:1:{seq[name]}")
                        seq[name] += 3

        tasks = [asyncio.ensure_future(one(name)) for name in seq]
        await asyncio.sleep(kill_after_s)
        gw.kill()
        await asyncio.gather(*tasks)

    for _ in range(cuts):
        gw.start()
        asyncio.run(send_until_killed(rng.uniform(0.1, 1.0)))
    gw.start()
    wait_until(
        lambda: stream_count(nats_server.url) >= len(set(acked)),
        60,
        "every acknowledged batch in the stream",
    )
    keys = _stored_keys(nats_server.url)
    assert len(keys) == len(set(keys)), "a batch is in the stream twice"
    assert set(acked) <= set(keys), f"lost: {sorted(set(acked) - set(keys))[:5]}"
    assert len(acked) > cuts  # the test sent real traffic between the cuts


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda d: cbor2.dumps(d),
            st.dictionaries(
                st.integers(0, 8),
                st.one_of(
                    st.integers(),
                    st.text(max_size=8),
                    st.binary(max_size=8),
                    st.lists(st.integers(), max_size=4),
                ),
                max_size=8,
            ),
        ),
    )
)
def test_fuzzed_payloads_get_4xx_and_the_gateway_keeps_serving(fuzz_gateway, payload):
    gw = fuzz_gateway

    async def send():
        async with CoapClient(gw.port) as client:
            return await client.post(payload, timeout_s=10)

    reply = asyncio.run(send())
    assert reply.code in ("2.04", "4.00", "4.13", "4.22"), reply.code


def test_garbage_datagrams_do_not_stop_the_gateway(nats_server, gateway_factory):
    gw = gateway_factory(nats_server.url).start()
    rng = random.Random(7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(2000):
            s.sendto(rng.randbytes(rng.randint(0, 64)), ("127.0.0.1", gw.port))
        # A CoAP header with a token length of 15 (reserved) and a truncated option.
        s.sendto(bytes([0x4F, 0x02, 0x00, 0x01]) + b"\x00" * 3, ("127.0.0.1", gw.port))

    async def send():
        async with CoapClient(gw.port) as client:
            return await client.post(batch("after-garbage", 1, 0))

    assert asyncio.run(send()).code == "2.04"
    assert gw.proc.poll() is None
