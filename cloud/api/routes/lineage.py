"""Lineage: where one reading came from. A reading (device, boot, seq) carries the first
seq of its batch (`batch_seq`); `batches.(device, boot, seq)` is that batch, with the
gateway, its spool record, the message id and the JetStream sequence (docs/cloud.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, Field

from cloud.api.common import DevicePath, from_us
from cloud.api.deps import Auth, StoreDep, quote

router = APIRouter(prefix="/lineage", tags=["lineage"])


class Reading(BaseModel):
    device: str
    metric: str
    ts: datetime
    value: float | None = Field(description="null when not finite (NaN, ±inf)")
    boot: int
    seq: int
    batch_seq: int
    device_ts_us: int
    time_source: str


class Batch(BaseModel):
    device: str
    boot: int
    seq: int
    readings: int
    gateway: str
    spool_id: int
    received: datetime
    inserted: datetime
    msg_id: str
    stream: str
    stream_seq: int
    deliveries: int
    time_source: str


class Lineage(BaseModel):
    reading: Reading
    batch: Batch | None  # null only if lineage rows were lost (the writer inserts both)


U32 = Annotated[int, Path(ge=0, le=2**32 - 1)]
U64 = Annotated[int, Path(ge=0, le=2**64 - 1)]


@router.get(
    "/{device}/{boot}/{seq}",
    summary="The batch, gateway and message a reading came from",
    operation_id="get_lineage",
    responses={404: {"description": "no such reading"}},
)
def get_lineage(_: Auth, store: StoreDep, device: DevicePath, boot: U32, seq: U64) -> Lineage:
    rows = store.query(
        "SELECT device, metric, toUnixTimestamp64Micro(ts), value, boot, seq, batch_seq, "
        f"device_ts, toString(time_source) FROM readings FINAL WHERE device = {quote(device)} "
        f"AND boot = {boot} AND seq = {seq} LIMIT 1"
    )
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no reading {device} boot {boot} seq {seq}")
    r = rows[0]
    reading = Reading(
        device=r[0],
        metric=r[1],
        ts=from_us(r[2]),
        value=r[3],
        boot=r[4],
        seq=r[5],
        batch_seq=r[6],
        device_ts_us=r[7],
        time_source=r[8],
    )
    b = store.query(
        "SELECT device, boot, seq, readings, gateway, spool_id, "
        "toUnixTimestamp64Micro(received), toUnixTimestamp64Micro(inserted), msg_id, stream, "
        "stream_seq, deliveries, toString(time_source) FROM batches FINAL "
        f"WHERE device = {quote(device)} AND boot = {boot} AND seq = {reading.batch_seq}"
    )
    batch = None
    if b:
        x = b[0]
        batch = Batch(
            device=x[0],
            boot=x[1],
            seq=x[2],
            readings=x[3],
            gateway=x[4],
            spool_id=x[5],
            received=from_us(x[6]),
            inserted=from_us(x[7]),
            msg_id=x[8],
            stream=x[9],
            stream_seq=x[10],
            deliveries=x[11],
            time_source=x[12],
        )
    return Lineage(reading=reading, batch=batch)
