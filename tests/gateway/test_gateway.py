"""The gateway end to end: a real nats-server, the gateway process, CoAP over loopback UDP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import cbor2
import pytest

import protocol
from protocol import parse_envelope

from .harness import (
    CoapClient,
    batch,
    spool_bytes,
    stream_count,
    stream_messages,
    wait_until,
)

VECTORS = Path(protocol.__file__).parent / "vectors"


def test_batches_flow_into_the_stream_once_each_in_order(nats_server, gateway_factory):
    gw = gateway_factory(nats_server.url).start()
    sent: dict[str, list[bytes]] = {f"dev-{d}": [] for d in range(3)}

    async def device(name: str) -> None:
        async with CoapClient(gw.port) as client:
            for i in range(10):
                payload = batch(name, boot=1, seq=i * 3)
                reply = await client.post(payload)
                assert reply.code == "2.04"
                assert reply.body[1] == 1 and reply.body[2] == i * 3 + 2  # boot, high-seq
                assert reply.body[3] > 1_700_000_000_000_000  # the gateway's clock, µs
                sent[name].append(payload)

    async def all_devices() -> None:
        await asyncio.gather(*(device(name) for name in sent))

    asyncio.run(all_devices())
    wait_until(lambda: stream_count(nats_server.url) == 30, 20, "30 messages in the stream")
    by_subject: dict[str, list] = {}
    for subject, headers, data in stream_messages(nats_server.url):
        env = parse_envelope(data)
        b = protocol.parse_batch(env.payload)
        assert headers["Nats-Msg-Id"] == f"{b.device}:1:{b.seq}"
        assert env.gateway == "gw-test"
        by_subject.setdefault(subject, []).append(env.payload)
    assert by_subject == {f"tlm.gw-test.{name}": payloads for name, payloads in sent.items()}


def test_a_resent_batch_is_acknowledged_again_and_stored_once(nats_server, gateway_factory):
    gw = gateway_factory(nats_server.url).start()
    payload = batch("dev-r", boot=4, seq=100)

    async def send_twice() -> list:
        async with CoapClient(gw.port) as client:
            return [await client.post(payload), await client.post(payload)]

    first, second = asyncio.run(send_twice())
    assert first.code == second.code == "2.04"
    assert first.body[2] == second.body[2] == 102
    wait_until(lambda: stream_count(nats_server.url) >= 1, 20, "the batch in the stream")
    assert stream_count(nats_server.url) == 1


def _invalid_batch_vectors():
    manifest = json.loads((VECTORS / "vectors.json").read_text())
    return [
        pytest.param(e, id=e["name"])
        for e in manifest
        if e["expect"] != "2.04" and e["message"] == "telemetry-batch"
    ]


def test_every_invalid_vector_gets_its_code_and_changes_nothing(nats_server, gateway_factory):
    gw = gateway_factory(nats_server.url).start()
    spool_dir = gw.workdir / "spool"

    async def send(payloads: list[bytes]) -> list:
        async with CoapClient(gw.port) as client:
            return [await client.post(p) for p in payloads]

    asyncio.run(send([batch("dev-ok", 1, 0)]))  # something to compare against
    wait_until(lambda: stream_count(nats_server.url) == 1, 20, "the valid batch")
    before = spool_bytes(spool_dir)
    entries = [p.values[0] for p in _invalid_batch_vectors()]
    replies = asyncio.run(send([(VECTORS / e["file"]).read_bytes() for e in entries]))
    results = [
        (e["name"], e["expect"], r.code, r.body) for e, r in zip(entries, replies, strict=True)
    ]
    wrong = [(n, want, got) for n, want, got, _ in results if want != got]
    assert not wrong, wrong
    for _, _, code, body in results:
        assert body[1] == int(code[0]) * 32 + int(code[2:])  # the body repeats the code
    assert spool_bytes(spool_dir) == before
    assert stream_count(nats_server.url) == 1


def test_wrong_content_format_is_refused(nats_server, gateway_factory):
    gw = gateway_factory(nats_server.url).start()

    async def send() -> list:
        async with CoapClient(gw.port) as client:
            return [
                await client.post(batch("dev-c", 1, 0), content_format=50),
                await client.post(batch("dev-c", 1, 0), content_format=None),
            ]

    assert [r.code for r in asyncio.run(send())] == ["4.15", "4.15"]


def test_a_noisy_device_is_slowed_alone(nats_server, gateway_factory):
    gw = gateway_factory(nats_server.url, coap={"rate_per_s": 1.0, "rate_burst": 2}).start()

    async def send() -> tuple[list, list]:
        async with CoapClient(gw.port) as client:
            noisy = [await client.post(batch("noisy", 1, i * 3)) for i in range(5)]
            quiet = [await client.post(batch("quiet", 1, 0))]
            return noisy, quiet

    noisy, quiet = asyncio.run(send())
    assert [r.code for r in noisy[:2]] == ["2.04", "2.04"]
    limited = [r for r in noisy[2:] if r.code == "4.29"]
    assert limited, [r.code for r in noisy]
    assert all(r.max_age and r.max_age >= 1 for r in limited)
    assert quiet[0].code == "2.04"


def test_a_full_spool_answers_503_with_max_age(tmp_path, gateway_factory):
    # No NATS at this address: nothing drains the spool, so it fills.
    gw = gateway_factory(
        "nats://127.0.0.1:9",
        spool={"max_bytes": 131072, "segment_bytes": 65536},
        coap={"rate_per_s": 10000.0, "rate_burst": 10000, "retry_after_s": 7},
    ).start()

    async def fill() -> list:
        async with CoapClient(gw.port) as client:
            replies = []
            for i in range(400):
                replies.append(await client.post(batch("filler", 1, i * 50, n=50)))
                if replies[-1].code != "2.04":
                    break
            return replies

    replies = asyncio.run(fill())
    assert replies[-1].code == "5.03", [r.code for r in replies][-5:]
    assert replies[-1].max_age == 7
    assert all(r.code == "2.04" for r in replies[:-1])
    assert spool_bytes(gw.workdir / "spool") <= 131072 + 4096


def test_metrics_report_ingest_rejects_spool_and_process(nats_server, gateway_factory):
    gw = gateway_factory(nats_server.url).start()

    async def send() -> None:
        async with CoapClient(gw.port) as client:
            await client.post(batch("dev-m", 1, 0))
            await client.post(b"\xff")

    asyncio.run(send())
    wait_until(
        lambda: "ringtail_gateway_published_total 1.0" in gw.metrics(),
        20,
        "the publish to be counted",
    )
    text = gw.metrics()
    assert 'ringtail_gateway_requests_total{code="2.04",resource="t"} 1.0' in text
    assert 'ringtail_gateway_requests_total{code="4.00",resource="t"} 1.0' in text
    assert "ringtail_gateway_readings_total 3.0" in text
    assert "ringtail_gateway_spool_unacked_records 0.0" in text
    assert "ringtail_gateway_nats_connected 1.0" in text
    assert "process_resident_memory_bytes" in text
    assert "ringtail_gateway_publish_seconds_count 1.0" in text


def test_sigterm_drains_and_exits_cleanly(nats_server, gateway_factory):
    gw = gateway_factory(nats_server.url).start()

    async def send() -> None:
        async with CoapClient(gw.port) as client:
            for i in range(20):
                assert (await client.post(batch("dev-t", 1, i * 3))).code == "2.04"

    asyncio.run(send())
    assert gw.terminate() == 0, gw.log()
    assert stream_count(nats_server.url) == 20
    assert "spool fully published" in gw.log()
    assert "Traceback" not in gw.log()


def test_health_reports_are_published_on_their_own_subject(nats_server, gateway_factory):
    gw = gateway_factory(nats_server.url).start()
    report = (VECTORS / "valid" / "health-full.cbor").read_bytes()

    async def send():
        async with CoapClient(gw.port) as client:
            return await client.post(report, path="h")

    reply = asyncio.run(send())
    assert reply.code == "2.04"
    assert set(reply.body) == {0, 1}
    wait_until(lambda: stream_count(nats_server.url, "HEALTH") == 1, 20, "the health report")
    [(subject, headers, data)] = stream_messages(nats_server.url, "HEALTH")
    assert cbor2.loads(report)[1] == "sht31-kitchen"
    assert subject == "health.gw-test.sht31-kitchen"
    assert headers["Nats-Msg-Id"] == "health:sht31-kitchen:7:3600"
    assert parse_envelope(data).payload == report
