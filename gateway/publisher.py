"""Publishes spool records to NATS JetStream and acknowledges them in the spool.

- Streams are created or checked at start with explicit settings: file storage, a
  duplicate window (JetStream drops a second message with the same Nats-Msg-Id inside it),
  size and age bounds, and discard-new, so a full stream refuses publishes (the spool then
  fills and devices get 5.03) instead of deleting readings.
- Order per device: at most one publish per device is in flight, and a failed publish is
  retried before that device's next record, so a device's messages enter its subject in
  the order the gateway acknowledged them. Across devices up to `max_in_flight` publishes
  wait for their acks at once, pipelined on the one connection: each is published with a
  reply subject on the publisher's own inbox, where JetStream's acks arrive, so a publish
  costs no task of its own; one that gets no ack within `publish_timeout_s` has failed.
- A record is acknowledged in the spool only after JetStream's ack; after a crash, records
  not yet acknowledged are published again and the duplicate window drops the repeats.
- NATS down: publishes fail and back off (doubling up to `reconnect_max_wait_s`) while the
  client reconnects; nothing is dropped, the spool holds the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from gateway.config import GatewayConfig
from gateway.keys import device_of, route
from gateway.metrics import Metrics
from gateway.spool import Record, Spool
from protocol import encode_envelope
from protocol.constants import SUBJECT_HEALTH, SUBJECT_TELEMETRY
from ringtail.logs import redact_url

log = logging.getLogger("ringtail.gateway.publisher")

_PUBLISH_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)


class StreamMismatch(RuntimeError):
    """An existing stream has settings the gateway cannot work with, or cannot change."""


class Publisher:
    def __init__(self, config: GatewayConfig, spool: Spool, metrics: Metrics) -> None:
        self._config = config
        self._nats = config.nats
        self._spool = spool
        self._metrics = metrics
        self._nc: nats.NATS | None = None
        self._js: JetStreamContext | None = None
        self._queues: dict[str, deque[Record]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._slots = asyncio.Semaphore(self._nats.max_in_flight)
        # Records taken from the spool but not yet acknowledged: bounded, so a long outage
        # does not pull the whole spool into memory.
        self._taken = asyncio.Semaphore(16 * self._nats.max_in_flight)
        self._tasks: set[asyncio.Task] = set()
        # Publishes awaiting JetStream's answer: record id -> (device, sent at, timeout).
        self._in_flight: dict[int, tuple[str, float, asyncio.TimerHandle]] = {}
        self._backoff: dict[str, float] = {}  # device -> its next retry wait, after a failure
        self._retries: dict[str, asyncio.TimerHandle] = {}  # device -> its retry, pending
        self._inbox = ""
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        # Set when publishing cannot go on at all (a stream that cannot be fixed): the
        # service exits with the error rather than spool forever.
        self.fatal: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> None:
        """Connect (retrying in the background if NATS is down) and start publishing."""
        self._spawn(self._connect_and_run())

    async def _connect_and_run(self) -> None:
        wait = self._nats.reconnect_wait_s
        while not self._stopping:
            try:
                self._nc = await nats.connect(
                    self._nats.url,
                    name=f"ringtail-gateway-{self._config.id}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self._nats.reconnect_wait_s,
                    connect_timeout=2,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                    error_cb=self._on_error,
                )
                break
            except (nats.errors.Error, OSError) as e:
                log.warning(
                    "NATS at %s unreachable (%s); retrying in %.0f s",
                    redact_url(self._nats.url),
                    e,
                    wait,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, self._nats.reconnect_max_wait_s)
        else:
            return
        self._metrics.nats_connected.set(1)
        js = self._nc.jetstream(timeout=self._nats.publish_timeout_s)
        self._js = js
        await self._ensure_streams(js)
        self._inbox = self._nc.new_inbox()
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
        self._spawn(self._take_records())
        self._spawn(self._dispatch(self._nc))

    async def _on_disconnect(self) -> None:
        self._metrics.nats_connected.set(0)
        if not self._stopping:
            log.warning("disconnected from NATS; spooling until it is back")

    async def _on_reconnect(self) -> None:
        self._metrics.nats_connected.set(1)
        log.info("reconnected to NATS")

    async def _on_error(self, e: Exception) -> None:
        log.debug("NATS client error: %s", e)

    async def _ensure_streams(self, js: JetStreamContext) -> None:
        wanted = [
            (self._nats.stream, f"{SUBJECT_TELEMETRY}.>"),
            (self._nats.health_stream, f"{SUBJECT_HEALTH}.>"),
        ]
        for name, subject in wanted:
            while True:
                try:
                    await self._ensure_stream(js, name, subject)
                    break
                except StreamMismatch:
                    raise
                except _PUBLISH_ERRORS as e:
                    log.warning("cannot check stream %s yet (%s); retrying", name, e)
                    await asyncio.sleep(self._nats.reconnect_wait_s)

    async def _ensure_stream(self, js: JetStreamContext, name: str, subject: str) -> None:
        config = StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            duplicate_window=float(self._nats.duplicate_window_s),
            max_bytes=self._nats.stream_max_bytes,
            max_age=float(self._nats.stream_max_age_s),
        )
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s (%s)", name, subject)
            return
        have = info.config
        if have.storage != StorageType.FILE:
            raise StreamMismatch(
                f"stream {name} uses {have.storage} storage; it must be file "
                "storage so acknowledged batches survive a restart"
            )
        if not any(s in (subject, ">") for s in have.subjects or []):
            raise StreamMismatch(f"stream {name} does not capture {subject}: {have.subjects}")
        drift = (
            have.discard != DiscardPolicy.NEW
            or (have.duplicate_window or 0) < self._nats.duplicate_window_s
            or have.max_bytes != config.max_bytes
            or (have.max_age or 0) != config.max_age
        )
        if drift:
            config.subjects = have.subjects
            await js.update_stream(config)
            log.warning("updated stream %s to the gateway's settings", name)

    async def _take_records(self) -> None:
        async for record in self._spool.records():
            await self._taken.acquire()
            self._idle.clear()
            device = device_of(record.key)
            queue = self._queues.setdefault(device, deque())
            queue.append(record)
            if len(queue) == 1:
                self._ready.put_nowait(device)

    async def _dispatch(self, nc: nats.NATS) -> None:
        """Publish the head record of each ready device. Acks come back on our own inbox
        (`_on_reply`), so a publish costs no task and no waiting here: up to
        `max_in_flight` are pipelined on the connection, one per device."""
        loop = asyncio.get_running_loop()
        while True:
            device = await self._ready.get()
            await self._slots.acquire()
            record = self._queues[device][0]
            subject, msg_id = route(self._config.id, record.key)
            body = encode_envelope(self._config.id, record.appended_us, record.id, record.payload)
            timer = loop.call_later(self._nats.publish_timeout_s, self._settle, record.id, None)
            self._in_flight[record.id] = (device, time.perf_counter(), timer)
            try:
                await nc.publish(
                    subject,
                    body,
                    reply=f"{self._inbox}.{record.id}",
                    headers={"Nats-Msg-Id": msg_id},
                )
            except _PUBLISH_ERRORS as e:
                log.debug("publish %s failed (%s)", msg_id, e)
                self._settle(record.id, None)

    async def _on_reply(self, msg: Msg) -> None:
        try:
            record_id = int(msg.subject.rpartition(".")[2])
        except ValueError:
            return
        self._settle(record_id, msg)

    def _settle(self, record_id: int, reply: Msg | None) -> None:
        """JetStream answered the publish of `record_id` (reply), or it failed or timed out
        (None). A late answer to an attempt already given up on settles the retry, if one
        is in flight (same message, same Nats-Msg-Id), or is ignored."""
        entry = self._in_flight.pop(record_id, None)
        if entry is None:
            return
        device, started, timer = entry
        timer.cancel()
        self._slots.release()
        duplicate = _pub_ack(reply)
        if duplicate is None:
            self._metrics.publish_errors.inc()
            wait = self._backoff.get(device, self._nats.reconnect_wait_s)
            self._backoff[device] = min(wait * 2, self._nats.reconnect_max_wait_s)
            log.debug("publish of record %d failed; retrying in %.1f s", record_id, wait)
            loop = asyncio.get_running_loop()
            self._retries[device] = loop.call_later(wait, self._retry, device)
            return
        self._backoff.pop(device, None)
        self._metrics.publish_seconds.observe(time.perf_counter() - started)
        self._metrics.published.inc()
        if duplicate:
            self._metrics.duplicates.inc()
        self._spool.ack(record_id)
        queue = self._queues[device]
        queue.popleft()
        self._taken.release()
        if queue:
            self._ready.put_nowait(device)
        else:
            del self._queues[device]
            if not self._queues:
                self._idle.set()

    def _retry(self, device: str) -> None:
        del self._retries[device]
        self._ready.put_nowait(device)

    async def drain(self, timeout_s: float) -> bool:
        """Publish what was taken, for at most `timeout_s`; True if nothing is left."""
        if self._js is None:
            return False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wait_until_published(), timeout_s)
        return self._spool.stats().unacked == 0

    async def _wait_until_published(self) -> None:
        while self._spool.stats().unacked:
            await self._idle.wait()
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._stopping = True
        for handle in [*self._retries.values(), *(t for _, _, t in self._in_flight.values())]:
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._metrics.nats_connected.set(0)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("publisher stopped: %s", exc, exc_info=not isinstance(exc, StreamMismatch))
        if not self.fatal.done():
            self.fatal.set_result(exc)


def _pub_ack(reply: Msg | None) -> bool | None:
    """Whether JetStream stored the message as a duplicate; None if it did not store it
    (no answer, no stream for the subject, or an error such as a full stream)."""
    if reply is None or (reply.headers and reply.headers.get("Status") == "503"):
        return None
    try:
        answer = json.loads(reply.data)
    except ValueError:
        return None
    if not isinstance(answer, dict) or "error" in answer or "seq" not in answer:
        log.debug("JetStream refused a publish: %s", answer)
        return None
    return bool(answer.get("duplicate"))
