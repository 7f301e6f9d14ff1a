"""Readings: a device's metric over a range, raw or aggregated; the latest values.

Which table answers a range is decided by the step and the range's alignment, never by
the caller: a rollup bucket (1 minute, 1 hour) may answer only when whole buckets tile each
requested step and the range, otherwise the rollup would count readings outside it.

    step absent or 0                              raw points from `readings FINAL`, paged
    step % 3600 == 0, start and end on the hour   `readings_1h`  (source "1h")
    step % 60 == 0, start and end on the minute   `readings_1m`  (source "1m")
    any other step                                aggregates of `readings FINAL` (source "raw")

Buckets are [start + k*step, start + (k+1)*step); empty buckets are left out. The rollup
views sum per-batch partials over FINAL (cloud/schema.py), so they agree with raw
aggregates exactly in count, min and max, and in sum up to float addition order.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from cloud.api.common import (
    DEVICE_PATTERN,
    METRIC_PATTERN,
    CursorQuery,
    DevicePath,
    LimitQuery,
    MetricQuery,
    bad_request,
    cursor_ints,
    iso,
    page_size,
    to_us,
)
from cloud.api.deps import Auth, FastJSON, Settings, StoreDep, quote

router = APIRouter(tags=["readings"])

_ROLLUPS: tuple[tuple[int, str, Literal["1m", "1h"]], ...] = (
    (3600, "readings_1h", "1h"),
    (60, "readings_1m", "1m"),
)
# A reading's dedup key is (device, metric, ts, boot, seq) and partitions are months of ts,
# so two copies of one reading are always in one partition: FINAL need not merge across
# partitions, which lets it work partition by partition (cheaper on long ranges).
_FINAL_SETTINGS = "SETTINGS do_not_merge_across_partitions_select_final = 1"
# Timestamps are formatted by ClickHouse (RFC 3339, UTC, always six fraction digits): in
# Python it cost more than the query itself for 10,000 rows (bench/bench_api.py).
_RFC3339_US = "'%Y-%m-%dT%H:%i:%S.%fZ', 'UTC'"
Source = Literal["raw", "1m", "1h"]


# Values are null when not finite: ClickHouse's JSON output writes NaN and ±inf as null
# (a device may send them; protocol/ does not forbid them), and JSON has no such numbers.
Value = Annotated[float | None, Field(description="null when not finite (NaN, ±inf)")]


class Point(BaseModel):
    ts: datetime
    value: Value
    boot: int
    seq: int


class Bucket(BaseModel):
    ts: datetime = Field(description="start of the bucket")
    count: int
    sum: Value
    avg: Value
    min: Value
    max: Value


class Series(BaseModel):
    device: str
    metric: str
    start: datetime
    end: datetime
    step: int = Field(description="seconds per bucket; 0 for raw points")
    source: Source = Field(description="which table answered")
    points: list[Point] = Field(description="raw readings (step 0), oldest first")
    buckets: list[Bucket] = Field(description="aggregates (step > 0), oldest first")
    next: str | None = Field(description="cursor of the next page of points; null on the last")


class Latest(BaseModel):
    device: str
    metric: str
    ts: datetime
    value: Value


class LatestPage(BaseModel):
    items: list[Latest]
    next: str | None


def choose_source(start_us: int, end_us: int, step: int) -> tuple[str, Source]:
    """(table, source label) for an aggregate over [start, end) in steps of `step` s."""
    for size, table, label in _ROLLUPS:
        size_us = size * 1_000_000
        if step % size == 0 and start_us % size_us == 0 and end_us % size_us == 0:
            return table, label
    return "readings", "raw"


@router.get(
    "/devices/{device}/readings",
    summary="A device's metric over a range: raw points, or buckets of `step` seconds",
    operation_id="get_readings",
    response_model=Series,
)
def get_readings(
    _: Auth,
    store: StoreDep,
    settings: Settings,
    device: DevicePath,
    metric: MetricQuery,
    start: Annotated[AwareDatetime, Query(description="inclusive, RFC 3339 with offset")],
    end: Annotated[AwareDatetime, Query(description="exclusive, RFC 3339 with offset")],
    step: Annotated[
        int, Query(ge=0, le=366 * 86400, description="seconds per bucket; 0: raw points")
    ] = 0,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Response:
    s_us, e_us = to_us(start, "start"), to_us(end, "end")
    if e_us <= s_us:
        raise bad_request("end: must be after start")
    if e_us - s_us > settings.max_range_days * 86_400_000_000:
        raise bad_request(f"end: the range is at most {settings.max_range_days} days")
    where = (
        f"device = {quote(device)} AND metric = {quote(metric)} "
        f"AND ts >= fromUnixTimestamp64Micro({s_us}) AND ts < fromUnixTimestamp64Micro({e_us})"
    )
    # Built as plain JSON values and returned as a FastJSON response, which FastAPI passes on
    # without validating it against `Series` again: at 10,000 rows per answer, pydantic
    # models per row cost more than the query (bench/bench_api.py). The shape is `Series`'s,
    # which test_api.py checks against the OpenAPI document.
    series: dict[str, Any] = {
        "device": device,
        "metric": metric,
        "start": iso(s_us),
        "end": iso(e_us),
        "step": step,
        "source": "raw",
        "points": [],
        "buckets": [],
        "next": None,
    }
    if step == 0:
        n = page_size(limit, settings.default_page, settings.max_page)
        if cursor is not None:
            c_ts, c_boot, c_seq = cursor_ints(cursor, 3)
            if not s_us <= c_ts < e_us:
                raise bad_request("cursor: not from this range")
            where += f" AND (ts, boot, seq) > (fromUnixTimestamp64Micro({c_ts}), {c_boot}, {c_seq})"
        rows = store.query(
            "SELECT toUnixTimestamp64Micro(ts), value, boot, seq, "
            f"formatDateTime(ts, {_RFC3339_US}) FROM readings FINAL "
            f"WHERE {where} ORDER BY ts, boot, seq LIMIT {n + 1} {_FINAL_SETTINGS}"
        )
        series["points"] = [
            {"ts": r[4], "value": r[1], "boot": r[2], "seq": r[3]} for r in rows[:n]
        ]
        if len(rows) > n:
            last = rows[n - 1]
            series["next"] = f"{last[0]}.{last[2]}.{last[3]}"
        return FastJSON(series)
    if limit is not None or cursor is not None:
        raise bad_request("limit, cursor: only for raw points (step 0); buckets are not paged")
    buckets = -(-(e_us - s_us) // (step * 1_000_000))
    if buckets > settings.max_buckets:
        raise bad_request(
            f"step: {buckets} buckets; at most {settings.max_buckets} (api.max_buckets): "
            "raise step or shorten the range"
        )
    table, series["source"] = choose_source(s_us, e_us, step)
    step_us = step * 1_000_000
    if table == "readings":
        rows = store.query(
            f"SELECT intDiv(toUnixTimestamp64Micro(ts) - {s_us}, {step_us}) AS k, "
            "count(), sum(value), min(value), max(value), "
            f"formatDateTime(fromUnixTimestamp64Micro({s_us} + k * {step_us}, 'UTC'), "
            f"{_RFC3339_US}) FROM readings FINAL "
            f"WHERE {where} GROUP BY k ORDER BY k {_FINAL_SETTINGS}"
        )
    else:
        s, e = s_us // 1_000_000, e_us // 1_000_000  # whole seconds: choose_source checked
        rows = store.query(
            f"SELECT intDiv(toUnixTimestamp(bucket) - {s}, {step}) AS k, "
            f"sum(count), sum(sum), min(min), max(max), "
            f"formatDateTime(fromUnixTimestamp64Micro({s_us} + k * {step_us}, 'UTC'), "
            f"{_RFC3339_US}) FROM {table} "
            f"WHERE device = {quote(device)} AND metric = {quote(metric)} "
            f"AND bucket >= toDateTime({s}, 'UTC') AND bucket < toDateTime({e}, 'UTC') "
            "GROUP BY k ORDER BY k"
        )
    series["buckets"] = [
        {
            "ts": r[5],
            "count": r[1],
            "sum": r[2],
            "avg": None if r[2] is None else r[2] / r[1],  # count >= 1: empty buckets are absent
            "min": r[3],
            "max": r[4],
        }
        for r in rows
    ]
    return FastJSON(series)


@router.get(
    "/readings/latest",
    summary="The latest value of each (device, metric)",
    operation_id="get_latest",
    response_model=LatestPage,
)
def get_latest(
    _: Auth,
    store: StoreDep,
    settings: Settings,
    device: Annotated[
        list[Annotated[str, Query(pattern=DEVICE_PATTERN)]] | None,
        Query(max_length=1000, description="only these devices (repeat); all when absent"),
    ] = None,
    metric: Annotated[
        list[Annotated[str, Query(pattern=METRIC_PATTERN)]] | None,
        Query(max_length=64, description="only these metrics (repeat); all when absent"),
    ] = None,
    since: Annotated[
        AwareDatetime | None,
        Query(description="look back to here; default now - api.latest_window_days"),
    ] = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Response:
    n = page_size(limit, settings.default_page, settings.max_page)
    if since is None:
        since_us = (
            to_us(datetime.now().astimezone(), "now") - settings.latest_window_days * 86_400_000_000
        )
    else:
        since_us = to_us(since, "since")
    where = [f"ts >= fromUnixTimestamp64Micro({since_us})"]
    if device:
        where.append(f"device IN ({', '.join(quote(d) for d in device)})")
    if metric:
        where.append(f"metric IN ({', '.join(quote(m) for m in metric)})")
    if cursor is not None:
        c_dev, sep, c_metric = cursor.partition("/")
        ok = sep and re.fullmatch(DEVICE_PATTERN, c_dev) and re.fullmatch(METRIC_PATTERN, c_metric)
        if not ok:
            raise bad_request("cursor: not a cursor this API returned")
        where.append(f"(device, metric) > ({quote(c_dev)}, {quote(c_metric)})")
    # argMax over (ts, boot, seq): two readings at one instant resolve the same way every time.
    rows = store.query(
        f"SELECT device, metric, formatDateTime(max(ts), {_RFC3339_US}), "
        "argMax(value, (ts, boot, seq)) "
        f"FROM readings FINAL WHERE {' AND '.join(where)} GROUP BY device, metric "
        f"ORDER BY device, metric LIMIT {n + 1} {_FINAL_SETTINGS}"
    )
    # plain JSON values, as in get_readings
    items = [{"device": r[0], "metric": r[1], "ts": r[2], "value": r[3]} for r in rows[:n]]
    nxt = f"{rows[n - 1][0]}/{rows[n - 1][1]}" if len(rows) > n else None
    return FastJSON({"items": items, "next": nxt})
