"""Device health: the reports of one device (`device_health FINAL`), newest first by
(boot, uptime_s), the report's identity."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from cloud.api.common import CursorQuery, DevicePath, LimitQuery, cursor_ints, from_us, page_size
from cloud.api.deps import Auth, Settings, StoreDep, quote

router = APIRouter(tags=["health"])


class HealthReport(BaseModel):
    device: str
    boot: int
    uptime_s: int
    received: datetime
    gateway: str
    reset: str
    heap_free: int
    ring_used: int
    ring_capacity: int
    overflow: int = Field(description="records (batches) lost to a full flash ring this boot")
    retransmits: int
    quarantined: int
    firmware: str


class HealthPage(BaseModel):
    items: list[HealthReport]
    next: str | None


_FIELDS = list(HealthReport.model_fields)


@router.get(
    "/devices/{device}/health",
    summary="A device's health reports, newest first",
    operation_id="get_device_health",
)
def get_device_health(
    _: Auth,
    store: StoreDep,
    settings: Settings,
    device: DevicePath,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> HealthPage:
    n = page_size(limit, settings.default_page, settings.max_page)
    where = f"device = {quote(device)}"
    if cursor is not None:
        boot, uptime = cursor_ints(cursor, 2)
        where += f" AND (boot, uptime_s) < ({boot}, {uptime})"
    cols = ", ".join("toUnixTimestamp64Micro(received)" if f == "received" else f for f in _FIELDS)
    rows = store.query(
        f"SELECT {cols} FROM device_health FINAL WHERE {where} "
        f"ORDER BY boot DESC, uptime_s DESC LIMIT {n + 1}"
    )
    items = []
    for r in rows[:n]:
        values = dict(zip(_FIELDS, r, strict=True))
        values["received"] = from_us(values["received"])
        items.append(HealthReport(**values))
    nxt = f"{items[-1].boot}.{items[-1].uptime_s}" if len(rows) > n else None
    return HealthPage(items=items, next=nxt)
