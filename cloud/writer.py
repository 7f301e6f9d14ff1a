"""The writer: TELEMETRY (JetStream) → ClickHouse, each reading exactly once in every query.

One loop per stream, one fetch at a time, so at most one fetch of messages is held in memory
(`nats.fetch_messages`, split into inserts of at most `clickhouse.max_rows_per_insert` rows):

    fetch ≤ N messages → decode (poison → dead letter, then ack) → insert readings, insert
    lineage → ack every good message → next fetch

- Ack only after the inserts returned. A crash anywhere before the ack leaves the messages
  unacked; JetStream redelivers them after `ack_wait_s` and they are inserted again. That
  second insert cannot show a duplicate: cloud/schema.py, invariants 1 and 2.
- ClickHouse failing or slow: the same rows are retried, with backoff, forever; nothing is
  fetched and nothing acked meanwhile. An insert that did land but timed out is simply
  inserted again and collapses like a redelivery (invariants 1 and 2). Inserts run with
  insert_deduplicate=0: a non-replicated MergeTree records a block's dedup entry before it
  commits the part, so a crash between the two made the redelivered insert, carrying the
  same token, be dropped as a duplicate of rows that never landed (seen: lineage rows lost
  in 1 of 5 kill -9 runs). The held messages are marked in-progress so JetStream does not
  hand them to another writer on the same durable consumer while this one still holds them.
- Health reports (HEALTH stream, `<durable>-health` consumer) go the same way into
  `device_health`, in a second loop of the same shape; the two loops share the store
  under one lock (one chDB session is not used from two threads at once).
- Poison (cloud/columns.py) is published to `<deadletter_prefix>.<subject>` on the
  DEADLETTER stream with the reason in a header, counted, and acked only after that publish
  was acknowledged, so it never blocks the stream and is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from cloud.columns import (
    BATCHES_COLUMNS,
    READINGS_COLUMNS,
    Decoded,
    Lineage,
    Poison,
    batches_table,
    decode,
    ipc_stream,
    readings_table,
)
from cloud.config import MAX_INSERT_BLOCK_ROWS, WriterConfig
from cloud.health import HEALTH_COLUMNS, DecodedHealth, decode_health, health_table
from cloud.migrate import apply_tiering, migrate
from cloud.store import Store, StoreError, open_store
from ringtail.logs import redact_url

log = logging.getLogger("ringtail.cloud.writer")

_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
DEADLETTER_MAX_AGE_S = 30 * 24 * 3600  # a month to look at and replay poison by hand
DEADLETTER_MAX_BYTES = 1 << 30
REASON_HEADER = "Ringtail-Reason"


@dataclass
class Counters:
    fetches: int = 0
    messages: int = 0
    readings: int = 0
    inserts: int = 0
    insert_failures: int = 0
    dead_letters: int = 0
    health_reports: int = 0


class Writer:
    def __init__(self, config: WriterConfig, store: Store | None = None) -> None:
        """Without `store` the writer opens, migrates and closes its own (waiting for
        ClickHouse). With one (`ringtail cloud run`, writer and API sharing a chDB session)
        it uses that store as is: the caller has migrated it and closes it afterwards."""
        self.config = config
        self.counters = Counters()
        self.store: Store | None = store
        self._owns_store = store is None
        self._nc: nats.NATS | None = None
        self._stop = asyncio.Event()
        self._store_lock = asyncio.Lock()

    def stop(self) -> None:
        """Finish the fetch in hand (insert and ack it, or leave it unacked), then return."""
        self._stop.set()

    async def run(self) -> None:
        try:
            if self._owns_store:
                self.store = await self._open_store()
            if self.store is None:
                return
            js = await self._connect()
            if js is None:
                return
            n = self.config.nats
            sub = await self._subscribe(js, n.stream, n.subjects, n.durable)
            if sub is None:
                return
            log.info("writer running: %s → %s", n.stream, self.store.engine)
            health = None
            if n.health_stream:
                health = asyncio.create_task(self._health_loop(js))
                health.add_done_callback(self._health_done)
            try:
                while not self._stop.is_set():
                    await self._cycle(js, sub)
            finally:
                await _quietly(sub.unsubscribe())
                if health is not None:
                    self._stop.set()
                    await health
        finally:
            if self._nc is not None:
                await _quietly(self._nc.drain())
            if self.store is not None and self._owns_store:
                await asyncio.to_thread(self.store.close)
            log.info("writer stopped: %s", self.counters)

    def _health_done(self, task: asyncio.Task) -> None:
        # The health loop only ends on stop(); anything else must not go unnoticed while
        # readings carry on: stop the writer, and run() re-raises the error.
        if not task.cancelled() and task.exception() is not None:
            log.error("health loop failed: %r; stopping", task.exception())
            self._stop.set()

    # --- start-up: each step waits for its dependency, logging why, until stop() ---

    async def _open_store(self) -> Store | None:
        ch = self.config.clickhouse
        wait = ch.retry_wait_s
        while not self._stop.is_set():
            try:
                store = await asyncio.to_thread(open_store, ch.url, ch.chdb_path, ch.timeout_s)
            except StoreError as e:
                log.warning("ClickHouse not ready (%s); retrying in %.1f s", e, wait)
            else:
                try:
                    version = await asyncio.to_thread(migrate, store)
                    tiering = await asyncio.to_thread(apply_tiering, store)
                except StoreError as e:
                    await asyncio.to_thread(store.close)
                    log.warning("cannot migrate yet (%s); retrying in %.1f s", e, wait)
                except BaseException:
                    await asyncio.to_thread(store.close)
                    raise
                else:
                    log.info(
                        "schema at version %d (%s), cold tiering %s",
                        version,
                        store.engine,
                        "on" if tiering else "off (no 'cold' volume)",
                    )
                    return store
            await self._sleep(wait)
            wait = min(wait * 2, ch.retry_max_wait_s)
        return None

    async def _connect(self) -> JetStreamContext | None:
        n = self.config.nats
        while not self._stop.is_set():
            try:
                self._nc = await nats.connect(
                    n.url,
                    name="ringtail-writer",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=n.reconnect_wait_s,
                    connect_timeout=2,
                    error_cb=_on_error,
                )
                return self._nc.jetstream(timeout=10)
            except (nats.errors.Error, OSError) as e:
                log.warning("NATS at %s unreachable (%s); retrying", redact_url(n.url), e)
                await self._sleep(n.reconnect_wait_s)
        return None

    async def _subscribe(
        self, js: JetStreamContext, stream: str, subjects: str, durable: str
    ) -> JetStreamContext.PullSubscription | None:
        n = self.config.nats
        # The gateway owns TELEMETRY's and HEALTH's settings (gateway/publisher.py); creating
        # them here with other settings would race and drift, so the writer waits instead.
        while not self._stop.is_set():
            try:
                await js.stream_info(stream)
                break
            except nats.js.errors.NotFoundError:
                log.warning(
                    "stream %s does not exist yet (a gateway creates it); checking again in %.0f s",
                    stream,
                    n.wait_stream_s,
                )
            except _NATS_ERRORS as e:
                log.warning("cannot look up stream %s (%s)", stream, e)
            await self._sleep(n.wait_stream_s)
        else:
            return None
        while not self._stop.is_set():
            try:
                await self._ensure_deadletter(js)
                return await js.pull_subscribe(
                    subjects,
                    durable=durable,
                    stream=stream,
                    config=ConsumerConfig(
                        durable_name=durable,
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL,
                        ack_wait=n.ack_wait_s,
                        max_deliver=-1,  # poison is dead-lettered by us, never dropped by NATS
                        max_ack_pending=4 * n.fetch_messages,
                        filter_subject=subjects,
                    ),
                    pending_msgs_limit=4 * n.fetch_messages,
                )
            except _NATS_ERRORS as e:
                log.warning("cannot create the consumer %s yet (%s); retrying", durable, e)
                await self._sleep(n.reconnect_wait_s)
        return None

    async def _ensure_deadletter(self, js: JetStreamContext) -> None:
        n = self.config.nats
        try:
            await js.stream_info(n.deadletter_stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=n.deadletter_stream,
                    subjects=[f"{n.deadletter_prefix}.>"],
                    storage=StorageType.FILE,
                    max_age=float(DEADLETTER_MAX_AGE_S),
                    max_bytes=DEADLETTER_MAX_BYTES,
                    duplicate_window=120.0,
                )
            )
            log.info("created stream %s (%s.>)", n.deadletter_stream, n.deadletter_prefix)

    # --- the loop ---

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        n = self.config.nats
        try:
            return await sub.fetch(n.fetch_messages, timeout=n.fetch_timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            # nothing arrived within fetch_timeout_s (nats-py raises either kind)
            return []
        except _NATS_ERRORS as e:
            log.warning("fetch failed (%r); retrying", e)
            await self._sleep(n.reconnect_wait_s)
            return []

    async def _cycle(self, js: JetStreamContext, sub: JetStreamContext.PullSubscription) -> None:
        msgs = await self._fetch(sub)
        if not msgs:
            return
        self.counters.fetches += 1
        log.debug("fetched %d", len(msgs))
        good: list[tuple[Msg, Decoded, Lineage]] = []
        for msg in msgs:
            try:
                decoded = decode(msg.data, _subject_device(msg.subject))
            except Poison as e:
                if not await self._dead_letter(js, msg, str(e)):
                    return  # NATS trouble: leave everything unacked, it comes back
                continue
            good.append((msg, decoded, _lineage(msg, decoded.batch.msg_id)))
        for chunk in _chunks(good, self.config.clickhouse.max_rows_per_insert):
            batches = [d for _, d, _ in chunk]
            lineage = [x for _, _, x in chunk]
            inserted_us = time.time_ns() // 1000
            parts = [
                ("readings", READINGS_COLUMNS, ipc_stream(readings_table(batches))),
                (
                    "batches",
                    BATCHES_COLUMNS,
                    ipc_stream(batches_table(batches, lineage, inserted_us)),
                ),
            ]
            if not await self._insert([m for m, _, _ in chunk], parts):
                return  # stopping while ClickHouse is down: nothing acked
            self.counters.readings += sum(d.batch.readings for d in batches)
        log.debug("inserted %d", len(good))
        await self._ack([m for m, _, _ in good])
        self.counters.messages += len(good)
        log.debug("acked %d", len(good))

    async def _health_loop(self, js: JetStreamContext) -> None:
        """HEALTH → device_health, the same cycle as readings: insert, then ack."""
        n = self.config.nats
        sub = await self._subscribe(js, n.health_stream, n.health_subjects, f"{n.durable}-health")
        if sub is None:
            return
        try:
            while not self._stop.is_set():
                msgs = await self._fetch(sub)
                good: list[tuple[Msg, DecodedHealth, Lineage]] = []
                for msg in msgs:
                    try:
                        decoded = decode_health(msg.data, _subject_device(msg.subject))
                    except Poison as e:
                        if not await self._dead_letter(js, msg, str(e)):
                            break  # NATS trouble: skip the insert, leave the fetch unacked
                        continue
                    r = decoded.report
                    msg_id = f"health:{r.device}:{r.boot}:{r.uptime_s}"
                    good.append((msg, decoded, _lineage(msg, msg_id)))
                else:
                    if not good:
                        continue
                    lineage = [x for _, _, x in good]
                    table = health_table([d for _, d, _ in good], lineage)
                    part = ("device_health", HEALTH_COLUMNS, ipc_stream(table))
                    if await self._insert([m for m, _, _ in good], [part]):
                        await self._ack([m for m, _, _ in good])
                        self.counters.health_reports += len(good)
        finally:
            await _quietly(sub.unsubscribe())

    async def _ack(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            await _quietly(msg.ack())
        if self._nc is not None:
            await _quietly(self._nc.flush(timeout=5))

    async def _insert(self, msgs: list[Msg], parts: list[tuple[str, list[str], bytes]]) -> bool:
        """Insert each (table, columns, Arrow stream) in order, retrying each until it
        returned. False if stop() came while ClickHouse was failing."""
        ch, n = self.config.clickhouse, self.config.nats
        wait, last_progress = ch.retry_wait_s, time.monotonic()
        for table, columns, data in parts:
            settings = {
                "insert_deduplicate": 0,
                "max_insert_block_size": MAX_INSERT_BLOCK_ROWS,
            }
            while True:
                if self.store is None:
                    return False
                try:
                    async with self._store_lock:
                        await asyncio.to_thread(
                            self.store.insert_arrow, table, columns, data, settings
                        )
                    break
                except StoreError as e:
                    self.counters.insert_failures += 1
                    log.warning(
                        "insert of %d messages into %s failed (%s); retrying in %.1f s, "
                        "fetching nothing meanwhile",
                        len(msgs),
                        table,
                        e,
                        wait,
                    )
                if self._stop.is_set():
                    return False
                if time.monotonic() - last_progress > n.ack_wait_s / 3:
                    last_progress = time.monotonic()
                    for msg in msgs:
                        await _quietly(msg.in_progress())
                await self._sleep(wait)
                wait = min(wait * 2, ch.retry_max_wait_s)
        self.counters.inserts += 1
        return True

    async def _dead_letter(self, js: JetStreamContext, msg: Msg, reason: str) -> bool:
        n = self.config.nats
        meta = msg.metadata
        headers = {
            REASON_HEADER: reason[:1000],
            "Ringtail-Subject": msg.subject,
            "Ringtail-Stream": meta.stream,
            "Ringtail-Stream-Seq": str(meta.sequence.stream),
            # a crash before the ack re-dead-letters the message: the window drops the copy
            "Nats-Msg-Id": f"dl:{meta.stream}:{meta.sequence.stream}",
        }
        try:
            await js.publish(f"{n.deadletter_prefix}.{msg.subject}", msg.data, headers=headers)
            await msg.ack_sync(timeout=5)
        except _NATS_ERRORS as e:
            log.warning("cannot dead-letter stream seq %d (%s)", meta.sequence.stream, e)
            return False
        self.counters.dead_letters += 1
        log.warning("dead-lettered %s seq %d: %s", msg.subject, meta.sequence.stream, reason)
        return True

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


def _subject_device(subject: str) -> str | None:
    """The device token of `<kind>.<gateway>.<device>`, None for another shape."""
    parts = subject.split(".")
    return parts[2] if len(parts) == 3 else None


def _lineage(msg: Msg, fallback_id: str) -> Lineage:
    meta = msg.metadata
    msg_id = (msg.headers or {}).get("Nats-Msg-Id") or fallback_id
    return Lineage(msg_id, meta.stream, meta.sequence.stream, meta.num_delivered)


def _chunks(
    good: list[tuple[Msg, Decoded, Lineage]], max_rows: int
) -> list[list[tuple[Msg, Decoded, Lineage]]]:
    """Whole messages, at most max_rows readings per chunk (a message alone may reach 16384)."""
    out: list[list[tuple[Msg, Decoded, Lineage]]] = []
    rows = 0
    for item in good:
        n = item[1].batch.readings
        if not out or rows + n > max_rows:
            out.append([])
            rows = 0
        out[-1].append(item)
        rows += n
    return out


async def _quietly(aw: object) -> None:
    """Await a NATS call whose failure only delays things (an ack lost → a redelivery)."""
    try:
        await aw  # type: ignore[misc]
    except _NATS_ERRORS as e:
        log.debug("ignored NATS error: %s", e)


async def _on_error(e: Exception) -> None:
    log.debug("NATS client error: %s", e)
