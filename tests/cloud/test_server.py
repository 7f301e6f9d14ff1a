"""The clickhouse-connect path: against the chDB HTTP front (always) and a real ClickHouse
server (when CLICKHOUSE_URL is set), with the same tests."""

from __future__ import annotations

import asyncio
import os
import random

import nats.js.errors
import pytest

from cloud.store import ServerStore
from cloud.writer import Writer

from .helpers import (
    READ_ROWS,
    all_acked,
    consumer_state,
    ensure_streams,
    make_batches,
    publish,
    run_writer_until,
    writer_config,
)
from .servers import ChFront, Proxy, real_server_database


@pytest.fixture(params=["chdb-front", "server"])
def clickhouse_url(request, tmp_path):
    if request.param == "chdb-front":
        front = ChFront(tmp_path / "front").start()
        yield front.url
        front.stop()
        return
    base = os.environ.get("CLICKHOUSE_URL")
    if not base:
        pytest.skip("CLICKHOUSE_URL is not set: no real ClickHouse server to test against")
    url, drop = real_server_database(base)
    yield url
    drop()


def expected_rows(batches):
    return sorted((r for b in batches for r in b.rows), key=lambda r: (r[0], r[4], r[5]))


def read_rows(url: str) -> list[tuple]:
    store = ServerStore(url, 10)
    try:
        return [tuple(r) for r in store.query(READ_ROWS)]
    finally:
        store.close()


def test_server_path_writes_rows_once(nats_server, clickhouse_url):
    batches = make_batches(random.Random(5), devices=3, per_device=10)

    async def scenario():
        await ensure_streams(nats_server.url)
        await publish(nats_server.url, batches)
        writer = Writer(writer_config(nats_server.url, url=clickhouse_url, fetch_messages=8))
        await run_writer_until(writer, all_acked(nats_server.url))
        # and again from the start of the stream: every row redelivered, none shown twice
        writer = Writer(
            writer_config(nats_server.url, url=clickhouse_url, durable="again", fetch_messages=3)
        )
        await run_writer_until(writer, all_acked(nats_server.url, "again"))

    asyncio.run(scenario())
    assert read_rows(clickhouse_url) == expected_rows(batches)


def test_clickhouse_unreachable_nothing_acked_nothing_lost_resumes(nats_server, clickhouse_url):
    """Down at start, up, down mid-run, up: the writer holds its fetch, acks nothing while
    ClickHouse is unreachable, and resumes by itself."""
    batches = make_batches(random.Random(9), devices=2, per_device=12)
    first, second = batches[::2], batches[1::2]

    async def scenario():
        await ensure_streams(nats_server.url)
        proxy = Proxy(clickhouse_url)
        dead_url = proxy.url
        writer = Writer(writer_config(nats_server.url, url=dead_url, fetch_messages=4))
        task = asyncio.create_task(writer.run())
        try:
            await publish(nats_server.url, first)
            await asyncio.sleep(2.0)  # ClickHouse unreachable from the start
            assert await _nothing_acked(nats_server.url)
            assert writer.counters.fetches == 0
            await proxy.up()
            await _until(all_acked(nats_server.url), 30)
            _, _, floor = await consumer_state(nats_server.url)
            assert floor == len(first)
            await proxy.down()
            failures = writer.counters.insert_failures
            await publish(nats_server.url, second)
            await asyncio.sleep(3.0)  # > ack_wait: held messages stay in progress, unacked
            pending, ack_pending, floor2 = await consumer_state(nats_server.url)
            assert floor2 == floor, "a message was acked while ClickHouse was down"
            assert pending + ack_pending == len(second)
            assert writer.counters.insert_failures > failures
            await proxy.up()
            await _until(all_acked(nats_server.url), 30)
        finally:
            writer.stop()
            await asyncio.wait_for(task, 30)
            await proxy.down()

    asyncio.run(scenario())
    assert read_rows(clickhouse_url) == expected_rows(batches)


def test_slow_clickhouse_insert_lands_but_times_out_retry_shows_it_once(
    nats_server, clickhouse_url
):
    """ClickHouse does the insert but answers after the client gave up: the writer retries
    the same rows with the same token, acks nothing meanwhile, and every row shows once."""
    batches = make_batches(random.Random(12), devices=2, per_device=10)
    first, second = batches[::2], batches[1::2]

    async def scenario():
        await ensure_streams(nats_server.url)
        proxy = Proxy(clickhouse_url)
        await proxy.up()
        slow_url = proxy.url
        config = writer_config(nats_server.url, url=slow_url, timeout_s=1.0, fetch_messages=4)
        writer = Writer(config)
        task = asyncio.create_task(writer.run())
        try:
            await publish(nats_server.url, first)
            await _until(all_acked(nats_server.url), 30)
            _, _, floor = await consumer_state(nats_server.url)
            proxy.stalled = True
            failures = writer.counters.insert_failures
            await publish(nats_server.url, second)
            await asyncio.sleep(3.0)
            _, _, floor2 = await consumer_state(nats_server.url)
            assert floor2 == floor, "a message was acked while its insert had not returned"
            assert writer.counters.insert_failures > failures
            proxy.stalled = False
            await _until(all_acked(nats_server.url), 30)
        finally:
            writer.stop()
            await asyncio.wait_for(task, 30)
            await proxy.down()

    asyncio.run(scenario())
    assert read_rows(clickhouse_url) == expected_rows(batches)


async def _nothing_acked(url: str) -> bool:
    try:
        _, _, floor = await consumer_state(url)
    except nats.js.errors.NotFoundError:  # the writer has not even subscribed
        return True
    return floor == 0


async def _until(check, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.2)
