"""Parameters shared by routers: names, times, page sizes and cursors, checked before any
SQL is built. Every value that reaches SQL is either matched by a pattern that admits no
quote (device ids and metric names follow protocol/telemetry.cddl), an int, or quoted by
`deps.quote`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import HTTPException, Path, Query, status

# protocol/telemetry.cddl: device-id and metric-name.
DEVICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# Metadata text: printable, no control characters (they have no place in a label).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
TAG_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The API's time domain: ClickHouse `DateTime` (rollup buckets) spans 1970 to 2106; raw
# `DateTime64(6)` is wider, but one domain for both keeps raw and rollup answers comparable.
TIME_MIN = EPOCH
TIME_MAX = datetime(2106, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)

DevicePath = Annotated[
    str, Path(pattern=DEVICE_PATTERN, description="device id (protocol/telemetry.cddl)")
]
DeviceQuery = Annotated[str, Query(pattern=DEVICE_PATTERN, description="device id")]
MetricQuery = Annotated[str, Query(pattern=METRIC_PATTERN, description="metric name")]
LimitQuery = Annotated[
    int | None,
    Query(ge=1, description="rows per page; default api.default_page, at most api.max_page"),
]
CursorQuery = Annotated[
    str | None,
    Query(max_length=200, description="`next` of the previous page; absent for the first"),
]


def bad_request(detail: str) -> HTTPException:
    """A parameter that passed its type but not a rule across parameters: 422 like
    FastAPI's own validation errors, with a sentence that names the parameter."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def to_us(t: datetime, name: str) -> int:
    """Microseconds since the epoch, exact (timedelta arithmetic, no float)."""
    if not TIME_MIN <= t < TIME_MAX:
        raise bad_request(f"{name}: must be from 1970-01-01 to before 2106-01-01 (UTC)")
    return (t - EPOCH) // US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso(us: int) -> str:
    """RFC 3339 in UTC, as pydantic writes an aware datetime: `Z`, and microseconds only
    when not zero."""
    return (EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def page_size(limit: int | None, default: int, maximum: int) -> int:
    if limit is None:
        return default
    if limit > maximum:
        raise bad_request(f"limit: at most {maximum} (api.max_page)")
    return limit


def cursor_ints(cursor: str, parts: int) -> list[int]:
    """A cursor of `parts` non-negative integers joined by '.', as this API writes them."""
    fields = cursor.split(".")
    if len(fields) != parts or not all(f.isdigit() and len(f) <= 20 for f in fields):
        raise bad_request("cursor: not a cursor this API returned")
    values = [int(f) for f in fields]
    if any(v >= 2**64 for v in values):
        raise bad_request("cursor: not a cursor this API returned")
    return values
