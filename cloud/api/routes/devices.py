"""Devices: the registry (`devices`, a ReplacingMergeTree(updated) read with FINAL).

Register inserts the first row; an update inserts a whole new row with a later `updated`,
which FINAL prefers. Register-then-check and read-then-update are serialized inside this
process by `_REGISTRY_LOCK`; two API processes on one server updating the same device at
once keep the later write (last writer wins), which is documented in docs/api.md.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cloud.api.common import (
    DEVICE_PATTERN,
    EPOCH,
    TAG_KEY_PATTERN,
    TEXT_PATTERN,
    US,
    DevicePath,
    LimitQuery,
    bad_request,
    from_us,
    page_size,
)
from cloud.api.deps import Auth, Settings, StoreDep, quote

router = APIRouter(prefix="/devices", tags=["devices"])

_REGISTRY_LOCK = threading.Lock()
MAX_TAGS = 64

Text = Annotated[str, StringConstraints(max_length=256, pattern=TEXT_PATTERN)]
Firmware = Annotated[str, StringConstraints(max_length=64, pattern=TEXT_PATTERN)]
TagKey = Annotated[str, StringConstraints(pattern=TAG_KEY_PATTERN)]
Tags = Annotated[dict[TagKey, Text], Field(max_length=MAX_TAGS)]


class Device(BaseModel):
    device: str
    location: str
    firmware: str
    tags: dict[str, str]
    updated: datetime


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: Annotated[str, StringConstraints(pattern=DEVICE_PATTERN)]
    location: Text = ""
    firmware: Firmware = ""
    tags: Tags = Field(default_factory=dict)


class DeviceUpdate(BaseModel):
    """Fields to change; an absent field keeps its value. `tags` replaces the whole map."""

    model_config = ConfigDict(extra="forbid")
    location: Text | None = None
    firmware: Firmware | None = None
    tags: Tags | None = None


class DevicePage(BaseModel):
    items: list[Device]
    next: str | None = Field(description="cursor of the next page; null on the last")


_COLUMNS = "device, location, firmware, tags, toUnixTimestamp64Micro(updated)"


def _device(row: list) -> Device:
    return Device(
        device=row[0], location=row[1], firmware=row[2], tags=row[3], updated=from_us(row[4])
    )


def _get(store: StoreDep, device: str) -> Device | None:
    rows = store.query(f"SELECT {_COLUMNS} FROM devices FINAL WHERE device = {quote(device)}")
    return _device(rows[0]) if rows else None


def _write(store: StoreDep, d: Device, updated_us: int) -> None:
    tags = ", ".join(f"{quote(k)}, {quote(v)}" for k, v in sorted(d.tags.items()))
    store.command(
        "INSERT INTO devices (device, location, firmware, tags, updated) VALUES "
        f"({quote(d.device)}, {quote(d.location)}, {quote(d.firmware)}, map({tags}), "
        f"fromUnixTimestamp64Micro({updated_us}, 'UTC'))"
    )


def _now_us() -> int:
    return time.time_ns() // 1000


@router.get("", summary="List devices, filtered by metadata", operation_id="list_devices")
def list_devices(
    _: Auth,
    store: StoreDep,
    settings: Settings,
    firmware: Annotated[str | None, Query(max_length=64, pattern=TEXT_PATTERN)] = None,
    location: Annotated[str | None, Query(max_length=256, pattern=TEXT_PATTERN)] = None,
    tag: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_TAGS,
            description="`key=value` (the tag has that value) or `key` (the tag is set); "
            "repeat for all of several",
        ),
    ] = None,
    after: Annotated[
        str | None, Query(pattern=DEVICE_PATTERN, description="`next` of the previous page")
    ] = None,
    limit: LimitQuery = None,
) -> DevicePage:
    n = page_size(limit, settings.default_page, settings.max_page)
    where = []
    if firmware is not None:
        where.append(f"firmware = {quote(firmware)}")
    if location is not None:
        where.append(f"location = {quote(location)}")
    for t in tag or ():
        key, sep, value = t.partition("=")
        if not re.fullmatch(TAG_KEY_PATTERN, key):
            raise bad_request(f"tag: {t!r}: the key must match {TAG_KEY_PATTERN}")
        if any(ord(c) < 32 or ord(c) == 127 for c in value) or len(value) > 256:
            raise bad_request(f"tag: {t!r}: the value must be printable, at most 256 characters")
        if sep:
            where.append(f"tags[{quote(key)}] = {quote(value)}")
        else:
            where.append(f"mapContains(tags, {quote(key)})")
    if after is not None:
        where.append(f"device > {quote(after)}")
    # Filters apply after FINAL (a WHERE on FINAL sees each device's latest row only), so a
    # device whose old row matched but whose current row does not is not listed.
    sql = f"SELECT {_COLUMNS} FROM devices FINAL"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = store.query(sql + f" ORDER BY device LIMIT {n + 1}")
    items = [_device(r) for r in rows[:n]]
    return DevicePage(items=items, next=items[-1].device if len(rows) > n else None)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a device",
    operation_id="register_device",
    responses={409: {"description": "the device is already registered"}},
)
def register_device(_: Auth, store: StoreDep, body: DeviceCreate) -> Device:
    with _REGISTRY_LOCK:
        if _get(store, body.device) is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"device {body.device} is registered")
        updated = _now_us()
        d = Device(**body.model_dump(), updated=from_us(updated))
        _write(store, d, updated)
    return d


@router.get(
    "/{device}",
    summary="One device",
    operation_id="get_device",
    responses={404: {"description": "not registered"}},
)
def get_device(_: Auth, store: StoreDep, device: DevicePath) -> Device:
    d = _get(store, device)
    if d is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device} is not registered")
    return d


@router.patch(
    "/{device}",
    summary="Update a device's metadata",
    operation_id="update_device",
    responses={404: {"description": "not registered"}},
)
def update_device(_: Auth, store: StoreDep, device: DevicePath, body: DeviceUpdate) -> Device:
    with _REGISTRY_LOCK:
        old = _get(store, device)
        if old is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device} is not registered")
        # A strictly later version, even when the clock has not moved a microsecond (or
        # stepped back): FINAL keeps the row with the highest `updated`.
        old_us = (old.updated - EPOCH) // US
        updated = max(_now_us(), old_us + 1)
        changes = body.model_dump(exclude_none=True)
        d = old.model_copy(update={**changes, "updated": from_us(updated)})
        _write(store, d, updated)
    return d
