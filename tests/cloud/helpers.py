"""Real parts for cloud tests: the TELEMETRY stream as the gateway makes it, test batches
with the rows they must become, publishing, consumer state, and the writer in-process."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cbor2
import nats
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

import native
from cloud.config import ClickhouseSection, NatsSection, WriterConfig
from cloud.writer import Writer
from gateway.config import NatsConfig
from protocol import encode_envelope

GATEWAY = "gw-test"
# Test data lies in the last days: rows older than the schema's TTL would be dropped.
BASE_US = (int(time.time()) // 3600 - 48) * 3600 * 1_000_000


async def ensure_streams(url: str) -> None:
    """TELEMETRY and HEALTH with the gateway's settings (gateway/publisher.py)."""
    d = NatsConfig()
    nc = await nats.connect(url)
    try:
        for name, subject in ((d.stream, "tlm.>"), (d.health_stream, "health.>")):
            await nc.jetstream().add_stream(
                StreamConfig(
                    name=name,
                    subjects=[subject],
                    retention=RetentionPolicy.LIMITS,
                    storage=StorageType.FILE,
                    discard=DiscardPolicy.NEW,
                    duplicate_window=float(d.duplicate_window_s),
                    max_bytes=d.stream_max_bytes,
                    max_age=float(d.stream_max_age_s),
                )
            )
    finally:
        await nc.close()


def health_body(device: str, boot: int, uptime_s: int, **fields) -> bytes:
    """A health report as the gateway publishes it (protocol/telemetry.cddl keys)."""
    raw = {0: 1, 1: device, 2: boot, 3: uptime_s, 4: 2, 5: 41_000, 6: [10, 512], 7: 0, 8: 3}
    raw[9] = fields.get("sampled", [100, 250])
    if "firmware" in fields:
        raw[11] = fields["firmware"]
    payload = cbor2.dumps(raw, canonical=True)
    return encode_envelope(GATEWAY, BASE_US + uptime_s, uptime_s, payload)


@dataclass(frozen=True)
class TestBatch:
    """A device batch and the readings rows it must become: (device, metric, ts, value, boot,
    seq, batch_seq, device_ts)."""

    device: str
    boot: int
    seq: int
    body: bytes  # the envelope, as the gateway publishes it
    rows: tuple[tuple, ...]

    @property
    def subject(self) -> str:
        return f"tlm.{GATEWAY}.{self.device}"

    @property
    def msg_id(self) -> str:
        return f"{self.device}:{self.boot}:{self.seq}"


def make_batch(
    rng: random.Random,
    device: str,
    boot: int,
    seq: int,
    points: int = 20,
    metrics: tuple[str, ...] = ("temperature", "humidity"),
    clock: bool = True,
    block: bool = False,
    t0: int = 5_000_000,
    received_us: int = BASE_US,
    step_us: int = 1_000_000,
) -> TestBatch:
    offset = received_us - t0 - points * step_us
    series, rows = [], []
    k = 0
    offsets = [i * step_us + rng.randrange(0, 1000) for i in range(points)]
    shift = offset if clock else received_us - (t0 + offsets[-1])
    for metric in metrics:
        values = [round(rng.uniform(-40, 60), 3) for _ in range(points)]
        if block:
            series.append({0: metric, 3: native.encode(offsets, values), 4: points})
        else:
            series.append({0: metric, 1: offsets, 2: values})
        for ts_off, v in zip(offsets, values, strict=True):
            rows.append((device, metric, t0 + ts_off + shift, v, boot, seq + k, seq, t0 + ts_off))
            k += 1
    raw = {0: 1, 1: device, 2: boot, 3: seq, 4: t0, 6: series}
    if clock:
        raw[5] = [offset, 250]
    payload = cbor2.dumps(raw, canonical=True)
    body = encode_envelope(GATEWAY, received_us, seq, payload)
    return TestBatch(device, boot, seq, body, tuple(rows))


def make_batches(
    rng: random.Random, devices: int, per_device: int, points: int = 20, **kw
) -> list[TestBatch]:
    out = []
    for d in range(devices):
        seq = 0
        for i in range(per_device):
            kw2 = dict(kw)
            kw2.setdefault("clock", i % 3 != 0)
            kw2.setdefault("block", i % 2 == 0)
            b = make_batch(
                rng,
                f"dev-{d:03d}",
                1,
                seq,
                points,
                received_us=BASE_US + i * 60_000_000,
                **kw2,
            )
            out.append(b)
            seq += len(b.rows)
    return out


async def publish(url: str, batches: list[TestBatch], raw: Sequence[tuple] = ()) -> None:
    """Publish as the gateway does (Nats-Msg-Id, wait for each JetStream ack); `raw` adds
    (subject, body, msg_id) messages as they are, e.g. poison."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for b in batches:
            await js.publish(b.subject, b.body, headers={"Nats-Msg-Id": b.msg_id})
        for subject, body, msg_id in raw:
            await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id})
    finally:
        await nc.close()


async def consumer_state(url: str, stream: str = "TELEMETRY", durable: str = "ringtail-writer"):
    """(num_pending, num_ack_pending, ack_floor stream seq) of the writer's consumer."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(stream, durable)
        return info.num_pending, info.num_ack_pending, info.ack_floor.stream_seq
    finally:
        await nc.close()


def writer_config(
    nats_url: str, chdb_path: Path | None = None, url: str = "", timeout_s: float = 5.0, **nats_kw
):
    return WriterConfig(
        nats=replace(NatsSection(url=nats_url, ack_wait_s=2.0, fetch_timeout_s=0.2), **nats_kw),
        clickhouse=ClickhouseSection(
            url=url,
            chdb_path=chdb_path or Path("var/clickhouse"),
            timeout_s=timeout_s,
            retry_wait_s=0.2,
            retry_max_wait_s=1.0,
        ),
    )


async def run_writer_until(writer: Writer, done, timeout_s: float = 60) -> None:
    """Run the writer until `await done()` is true (checked every 0.2 s), then stop it."""
    task = asyncio.create_task(writer.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await done():
            if task.done():
                task.result()
                raise RuntimeError("the writer returned early")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"writer did not finish in {timeout_s} s: {writer.counters}")
            await asyncio.sleep(0.2)
    finally:
        writer.stop()
        await asyncio.wait_for(task, 30)


def all_acked(url: str, durable: str = "ringtail-writer", stream: str = "TELEMETRY"):
    async def check() -> bool:
        try:
            pending, ack_pending, _ = await consumer_state(url, stream, durable)
        except nats.js.errors.NotFoundError:
            return False
        return pending == 0 and ack_pending == 0

    return check


READ_ROWS = (
    "SELECT device, metric, toUnixTimestamp64Micro(ts), value, boot, seq, batch_seq, device_ts "
    "FROM readings FINAL ORDER BY device, boot, seq"
)
