"""The writer against a real nats-server and real chDB: rows once each, exact times and
values, lineage, rollups equal to raw aggregates, poison dead-lettered."""

from __future__ import annotations

import asyncio
import random

import nats

from cloud.store import ChdbStore
from cloud.writer import Writer
from protocol import encode_envelope

from .helpers import (
    BASE_US,
    GATEWAY,
    READ_ROWS,
    all_acked,
    ensure_streams,
    health_body,
    make_batch,
    make_batches,
    publish,
    run_writer_until,
    writer_config,
)


def expected_rows(batches):
    return sorted((r for b in batches for r in b.rows), key=lambda r: (r[0], r[4], r[5]))


def test_batches_become_rows_once_with_exact_times_and_values(nats_server, tmp_path):
    rng = random.Random(7)
    batches = make_batches(rng, devices=4, per_device=12)
    path = tmp_path / "ch"

    async def scenario():
        await ensure_streams(nats_server.url)
        await publish(nats_server.url, batches)
        # the same batches again beyond the stream's duplicate window (new msg ids)
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            for b in batches[:5]:
                await js.publish(b.subject, b.body, headers={"Nats-Msg-Id": f"again:{b.msg_id}"})
        finally:
            await nc.close()
        writer = Writer(writer_config(nats_server.url, path, fetch_messages=7))
        await run_writer_until(writer, all_acked(nats_server.url))
        return writer.counters

    counters = asyncio.run(scenario())
    assert counters.messages == len(batches) + 5
    assert counters.dead_letters == 0
    store = ChdbStore(path)
    try:
        got = [tuple(r) for r in store.query(READ_ROWS)]
        assert got == expected_rows(batches)
        # no duplicate in any query: count(), count(DISTINCT identity), FINAL or not merged
        total = store.query("SELECT count() FROM readings FINAL")[0][0]
        distinct = store.query("SELECT count(DISTINCT device, boot, seq) FROM readings")[0][0]
        assert total == distinct == len(got)
        lineage = store.query(
            "SELECT device, boot, seq, readings, gateway, msg_id, stream, "
            "toUnixTimestamp64Micro(received) FROM batches FINAL ORDER BY device, seq"
        )
        want = sorted(
            (b.device, 1, b.seq, len(b.rows), GATEWAY, b.msg_id, "TELEMETRY") for b in batches
        )
        # a re-published copy keeps the latest insert: its msg id may be the "again:" one
        assert [(*tuple(r[:5]), r[5].removeprefix("again:"), r[6]) for r in lineage] == want
        # every row traces to its batch
        orphans = store.query(
            "SELECT count() FROM readings AS r FINAL LEFT ANTI JOIN "
            "(SELECT device, boot, seq FROM batches FINAL) AS b "
            "ON r.device = b.device AND r.boot = b.boot AND r.batch_seq = b.seq"
        )
        assert orphans == [[0]]
    finally:
        store.close()


def test_rollups_equal_aggregates_over_raw_rows(nats_server, tmp_path):
    rng = random.Random(11)
    # 2 s steps over 200 points: batches straddle minute boundaries
    batches = make_batches(rng, devices=3, per_device=8, points=200)
    path = tmp_path / "ch"

    async def scenario():
        await ensure_streams(nats_server.url)
        await publish(nats_server.url, batches)
        writer = Writer(writer_config(nats_server.url, path, fetch_messages=5))
        await run_writer_until(writer, all_acked(nats_server.url))
        # redeliver everything: a second consumer name sees the stream from the start
        writer = Writer(writer_config(nats_server.url, path, durable="second", fetch_messages=9))
        await run_writer_until(writer, all_acked(nats_server.url, "second"))

    asyncio.run(scenario())
    store = ChdbStore(path)
    try:
        for suffix, bucket in (("1m", "toStartOfMinute"), ("1h", "toStartOfHour")):
            raw = store.query(
                f"SELECT device, metric, toString({bucket}(ts)) AS b, count(), min(value), "
                "max(value), sum(value) FROM readings FINAL GROUP BY device, metric, b "
                "ORDER BY device, metric, b"
            )
            rolled = store.query(
                f"SELECT device, metric, toString(bucket) AS b, count, min, max, sum "
                f"FROM readings_{suffix} ORDER BY device, metric, b"
            )
            assert len(raw) == len(rolled) > 0
            for r, g in zip(raw, rolled, strict=True):
                assert r[:6] == g[:6], (suffix, r, g)
                assert abs(r[6] - g[6]) <= 1e-9 * max(1.0, abs(r[6])), (suffix, r, g)
        assert sum(r[3] for r in raw) == sum(len(b.rows) for b in batches)
    finally:
        store.close()


def test_poison_goes_to_dead_letter_and_never_blocks(nats_server, tmp_path):
    rng = random.Random(3)
    good = make_batches(rng, devices=2, per_device=3)
    ok_payload = make_batch(rng, "dev-p", 1, 0).body
    corrupt_block = encode_envelope(
        GATEWAY,
        BASE_US,
        1,
        __import__("cbor2").dumps(
            {0: 1, 1: "dev-p", 2: 1, 3: 100, 4: 0, 6: [{0: "t", 3: b"\x01\x00junk", 4: 3}]}
        ),
    )
    poison = [
        (f"tlm.{GATEWAY}.dev-p", b"not cbor at all", "p1"),
        (f"tlm.{GATEWAY}.dev-p", encode_envelope(GATEWAY, 1, 1, b"\xa0"), "p2"),
        (f"tlm.{GATEWAY}.dev-p", corrupt_block, "p3"),
        (f"tlm.{GATEWAY}.other", ok_payload, "p4"),  # subject names another device
    ]
    path = tmp_path / "ch"

    async def scenario():
        await ensure_streams(nats_server.url)
        await publish(nats_server.url, good[:3], poison)
        await publish(nats_server.url, good[3:])
        writer = Writer(writer_config(nats_server.url, path, fetch_messages=4))
        await run_writer_until(writer, all_acked(nats_server.url))
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe("deadletter.>", durable="inspect", stream="DEADLETTER")
            letters = await sub.fetch(10, timeout=2)
            for m in letters:
                await m.ack()
            return writer.counters, [(m.subject, m.headers, m.data) for m in letters]
        finally:
            await nc.close()

    counters, letters = asyncio.run(scenario())
    assert counters.dead_letters == 4
    assert counters.messages == len(good)
    assert [s for s, _, _ in letters] == [f"deadletter.{s}" for s, _, _ in poison]
    assert [d for _, _, d in letters] == [d for _, d, _ in poison]
    reasons = [h["Ringtail-Reason"] for _, h, _ in letters]
    assert reasons[0].startswith("bad envelope")
    assert reasons[1].startswith("bad batch")
    # protocol.parse_batch decodes blocks itself (so does the gateway); cloud/columns.py
    # catches native.CodecError too, for a block that passed an older gateway
    assert "block does not decode" in reasons[2] or "corrupt codec block" in reasons[2]
    assert "subject names device 'other'" in reasons[3]
    store = ChdbStore(path)
    try:
        got = [tuple(r) for r in store.query(READ_ROWS)]
        assert got == expected_rows(good)
    finally:
        store.close()


def test_health_reports_become_device_health_rows_once(nats_server, tmp_path):
    reports = [("dev-h1", 1, u) for u in (60, 120, 180)] + [("dev-h2", 3, 5)]
    path = tmp_path / "ch"

    async def scenario():
        await ensure_streams(nats_server.url)
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            for device, boot, uptime in reports:
                body = health_body(device, boot, uptime, firmware="1.4.2")
                for copy in ("", ":again"):  # the second copy: a re-publish past the window
                    msg_id = f"health:{device}:{boot}:{uptime}{copy}"
                    await js.publish(
                        f"health.{GATEWAY}.{device}", body, headers={"Nats-Msg-Id": msg_id}
                    )
            await js.publish(f"health.{GATEWAY}.dev-h1", b"junk", headers={"Nats-Msg-Id": "j"})
        finally:
            await nc.close()
        writer = Writer(writer_config(nats_server.url, path))
        await run_writer_until(
            writer, all_acked(nats_server.url, "ringtail-writer-health", "HEALTH")
        )
        return writer.counters

    counters = asyncio.run(scenario())
    assert counters.health_reports == 2 * len(reports)
    assert counters.dead_letters == 1
    store = ChdbStore(path)
    try:
        rows = store.query(
            "SELECT device, boot, uptime_s, reset, ring_used, ring_capacity, firmware, "
            "sampled_first, sampled_last, gateway FROM device_health FINAL "
            "ORDER BY device, boot, uptime_s"
        )
        assert rows == [
            [d, b, u, "watchdog", 10, 512, "1.4.2", 100, 250, GATEWAY] for d, b, u in reports
        ]
    finally:
        store.close()
