"""The exactly-once audit (cloud/audit.py) over HTTP: what `ringtail audit --api` reads
while `ringtail cloud run` holds the embedded database."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from cloud.api.common import DevicePath
from cloud.api.deps import Auth, StoreDep
from cloud.audit import audit

router = APIRouter(tags=["audit"])


class AuditTotals(BaseModel):
    expected: int
    present: int
    missing: int
    duplicated: int
    late: int
    ahead: int
    overflow: int


class BootAuditModel(AuditTotals):
    device: str
    boot: int
    first: int
    last: int
    quarantined: int
    missing_ranges: list[tuple[int, int]]
    ok: bool


class AuditModel(BaseModel):
    ok: bool
    late_s: float
    totals: AuditTotals
    boots: list[BootAuditModel]


LateQuery = Annotated[
    float,
    Query(
        ge=0,
        le=30 * 86400,
        description="a reading is late when it reached the gateway "
        "more than this many seconds after it was sampled",
    ),
]


@router.get(
    "/audit",
    summary="Readings the devices sampled against the rows stored: missing, duplicated, late",
    operation_id="get_audit",
)
def get_audit(_: Auth, store: StoreDep, late_s: LateQuery = 300.0) -> AuditModel:
    return AuditModel(**audit(store, late_s=late_s).as_dict())


@router.get(
    "/devices/{device}/audit",
    summary="The audit of one device",
    operation_id="get_device_audit",
)
def get_device_audit(
    _: Auth, store: StoreDep, device: DevicePath, late_s: LateQuery = 300.0
) -> AuditModel:
    return AuditModel(**audit(store, device=device, late_s=late_s).as_dict())
