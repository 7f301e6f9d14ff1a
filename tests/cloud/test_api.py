"""The HTTP API over a database filled by the real writer from a real nats-server: every
endpoint for success, bad parameters, missing or wrong token and limits; ranges return
exactly the rows written; rollups agree with raw aggregates."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import nats
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from cloud.api import ApiSettings, create_app, load_api_config, resolve_tokens
from cloud.api.common import EPOCH
from cloud.api.routes.readings import LatestPage, Series
from cloud.api.settings import ConfigError, parse_tokens
from cloud.migrate import migrate
from cloud.store import ChdbStore, ServerStore
from cloud.writer import Writer
from tests.gateway.harness import NatsServer, free_port, http_get, wait_until

from .helpers import (
    BASE_US,
    GATEWAY,
    all_acked,
    ensure_streams,
    health_body,
    make_batch,
    make_batches,
    publish,
    run_writer_until,
    writer_config,
)
from .servers import ChFront

TOKEN = "test-token-0123456789abcdefghij"
OTHER_TOKEN = "other-token-0123456789abcdefghij"
HOURLY = "dev-hourly"
# BASE_US is on the hour; HOURLY's batches land every 10 minutes over 6 hours.
HOURLY_BATCHES = 36
HEALTH = [("dev-000", 1, u) for u in (60, 120, 180)] + [("dev-000", 2, 30)]


@dataclass
class Db:
    path: Path
    batches: list  # of helpers.TestBatch

    def rows(self, device: str, metric: str) -> list[tuple]:
        """(ts_us, value, boot, seq) of every reading written, in the API's order."""
        out = [
            (r[2], r[3], r[4], r[5])
            for b in self.batches
            for r in b.rows
            if r[0] == device and r[1] == metric
        ]
        return sorted(out, key=lambda r: (r[0], r[2], r[3]))


def fill(tmp: Path) -> Db:
    rng = random.Random(11)
    batches = make_batches(rng, devices=3, per_device=8)
    seq = 0
    for i in range(HOURLY_BATCHES):
        b = make_batch(
            rng,
            HOURLY,
            1,
            seq,
            points=30,
            received_us=BASE_US + 60_000_000 + i * 600_000_000,
            block=i % 2 == 0,
            step_us=2_000_000,
        )
        batches.append(b)
        seq += len(b.rows)
    server = NatsServer(tmp / "nats").start()
    path = tmp / "ch"
    try:

        async def scenario() -> None:
            await ensure_streams(server.url)
            await publish(server.url, batches)
            nc = await nats.connect(server.url)
            try:
                js = nc.jetstream()
                for device, boot, uptime in HEALTH:
                    await js.publish(
                        f"health.{GATEWAY}.{device}",
                        health_body(device, boot, uptime, firmware="1.4.2"),
                        headers={"Nats-Msg-Id": f"h:{device}:{boot}:{uptime}"},
                    )
            finally:
                await nc.close()
            writer = Writer(writer_config(server.url, path))
            tele, health = (
                all_acked(server.url),
                all_acked(server.url, "ringtail-writer-health", "HEALTH"),
            )

            async def done() -> bool:
                return await tele() and await health()

            await run_writer_until(writer, done)

        asyncio.run(scenario())
    finally:
        server.stop()
    return Db(path, batches)


def open_app(path: Path, **limits):
    store = ChdbStore(path)
    settings = ApiSettings(**limits)
    app = create_app(settings, store, {TOKEN: "tester", OTHER_TOKEN: "other"})
    return app, store


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def iso(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def us_of(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Db:
    return fill(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def client(db):
    app, store = open_app(
        db.path, max_page=50, default_page=20, max_buckets=1000, max_range_days=31
    )
    try:
        with TestClient(app) as c:
            yield c
    finally:
        store.close()


DATA_OPERATIONS = [
    ("get", "/devices"),
    ("post", "/devices"),
    ("get", "/devices/dev-000"),
    ("patch", "/devices/dev-000"),
    (
        "get",
        "/devices/dev-000/readings?metric=temperature&start=2026-01-01T00:00:00Z"
        "&end=2026-01-02T00:00:00Z",
    ),
    ("get", "/readings/latest"),
    ("get", "/lineage/dev-000/1/0"),
    ("get", "/devices/dev-000/health"),
    ("get", "/audit"),
    ("get", "/devices/dev-000/audit"),
]


# ---- authorization -------------------------------------------------------------------


def test_every_data_operation_declares_bearer_auth_and_only_ops_are_open(client):
    doc = client.get("/openapi.json").json()
    open_ops = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not op.get("security"):
                open_ops.add((method, path))
    assert open_ops == {("get", "/healthz"), ("get", "/metrics")}
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


@pytest.mark.parametrize(("method", "url"), DATA_OPERATIONS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdefghij"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "not-bearer", "longer", "empty"],
)
def test_data_endpoints_refuse_a_missing_or_wrong_token(client, method, url, headers):
    r = client.request(method, url, headers=headers, json={"device": "zz-1"})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"


def test_every_configured_token_is_accepted(client):
    for token in (TOKEN, OTHER_TOKEN):
        r = client.get("/devices", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200


def test_create_app_refuses_no_tokens(db):
    with pytest.raises(ValueError, match="token"):
        create_app(ApiSettings(), None, {})  # type: ignore[arg-type]


def test_settings_refuse_placeholder_and_short_tokens_and_generate_one_when_unset():
    for bad in ("changethis", "admin:changethis", "short", "a:" + "x" * 23):
        with pytest.raises(ConfigError, match=r"api\.tokens"):
            load_api_config(None, {"RINGTAIL_API_TOKENS": bad})
    cfg = load_api_config(None, {"RINGTAIL_API_TOKENS": f"ci:{TOKEN}, {OTHER_TOKEN}"})
    assert parse_tokens(cfg.api.tokens) == {TOKEN: "ci", OTHER_TOKEN: "token1"}
    tokens, generated = resolve_tokens(load_api_config(None, {}).api)
    assert generated is not None and len(generated) >= 40 and tokens == {generated: "local"}
    assert resolve_tokens(ApiSettings())[1] != generated  # fresh at every start
    assert cfg.api.host == "127.0.0.1" and cfg.api.port == 8000


# ---- readings ---------------------------------------------------------------------------


def conforms(body: dict, model: type[BaseModel]) -> None:
    """`body` has exactly the model's fields and validates: routes that build their JSON
    without pydantic (for speed) still answer what the OpenAPI document says."""
    assert set(body) == set(model.model_fields)
    model.model_validate(body)
    for name, field in model.model_fields.items():
        inner = getattr(field.annotation, "__args__", (None,))[0]
        rows = body[name]
        if isinstance(rows, list) and isinstance(inner, type) and issubclass(inner, BaseModel):
            assert all(set(x) == set(inner.model_fields) for x in rows)


def all_points(client, device, metric, start_us, end_us, limit):
    points, cursor, pages = [], None, 0
    while True:
        params = {"metric": metric, "start": iso(start_us), "end": iso(end_us), "limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = client.get(f"/devices/{device}/readings", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        conforms(body, Series)
        assert body["source"] == "raw" and body["buckets"] == []
        assert len(body["points"]) <= limit
        points += [(us_of(p["ts"]), p["value"], p["boot"], p["seq"]) for p in body["points"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return points, pages


@pytest.mark.parametrize("limit", [7, 50])
def test_raw_range_pages_return_exactly_the_rows_written(client, db, limit):
    for device in ("dev-000", "dev-002", HOURLY):
        for metric in ("temperature", "humidity"):
            want = db.rows(device, metric)
            got, pages = all_points(
                client, device, metric, BASE_US - 86_400_000_000, BASE_US + 86_400_000_000, limit
            )
            assert got == want
            assert pages == len(want) // limit + 1
    # a sub-range: start inclusive, end exclusive, to the microsecond
    want = db.rows(HOURLY, "temperature")
    a, b = want[10][0], want[200][0]
    got, _ = all_points(client, HOURLY, "temperature", a, b, 50)
    assert got == [r for r in want if a <= r[0] < b] == want[10:200]


def raw_buckets(rows, start_us, end_us, step_s):
    out: dict[int, list[float]] = {}
    for ts, value, _, _ in rows:
        if start_us <= ts < end_us:
            out.setdefault((ts - start_us) // (step_s * 1_000_000), []).append(value)
    return [(k, len(v), sum(v), min(v), max(v)) for k, v in sorted(out.items())]


def get_buckets(client, device, metric, start_us, end_us, step):
    r = client.get(
        f"/devices/{device}/readings",
        params={"metric": metric, "start": iso(start_us), "end": iso(end_us), "step": step},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    conforms(body, Series)
    assert body["points"] == [] and body["next"] is None
    buckets = [
        (
            (us_of(b["ts"]) - start_us) // (step * 1_000_000),
            b["count"],
            b["sum"],
            b["min"],
            b["max"],
        )
        for b in body["buckets"]
    ]
    for b in body["buckets"]:
        assert b["avg"] == pytest.approx(b["sum"] / b["count"])
    return body["source"], buckets


@pytest.mark.parametrize(
    ("start_off_s", "end_off_s", "step", "source"),
    [
        (0, 7 * 3600, 60, "1m"),
        (0, 7 * 3600, 300, "1m"),
        (0, 7 * 3600, 3600, "1h"),
        (0, 7 * 3600, 7200, "1h"),
        (1800, 6 * 3600, 3600, "1m"),  # on the minute, not on the hour
        (0, 7 * 3600, 90, "raw"),  # 90 s is no whole number of minutes
        (30, 7 * 3600, 120, "raw"),  # start off the minute
        (0, 7 * 3600 - 7, 3600, "raw"),  # end off the minute
    ],
)
def test_buckets_use_the_rollup_the_step_allows_and_agree_with_raw_aggregates(
    client, db, start_off_s, end_off_s, step, source
):
    s, e = BASE_US + start_off_s * 1_000_000, BASE_US + end_off_s * 1_000_000
    for device, metric in ((HOURLY, "temperature"), (HOURLY, "humidity"), ("dev-001", "humidity")):
        got_source, got = get_buckets(client, device, metric, s, e, step)
        assert got_source == source
        want = raw_buckets(db.rows(device, metric), s, e, step)
        assert want or device != HOURLY, "the hourly data must fall in the range"
        assert [(k, n, lo, hi) for k, n, _, lo, hi in got] == [
            (k, n, lo, hi) for k, n, _, lo, hi in want
        ]
        # sums differ only by float addition order
        assert [x[2] for x in got] == pytest.approx([x[2] for x in want], rel=1e-12)


def test_rollup_and_raw_sql_agree_on_the_same_range(client, db):
    """The 1-minute answer equals the same aggregate computed by ClickHouse from raw rows."""
    s, e = BASE_US, BASE_US + 7 * 3600 * 1_000_000
    _, minute = get_buckets(client, HOURLY, "temperature", s, e, 600)
    _, raw = get_buckets(client, HOURLY, "temperature", s + 0, e - 1_000_000, 600)  # raw path
    assert [b[:2] + b[3:] for b in minute] == [b[:2] + b[3:] for b in raw]
    assert [b[2] for b in minute] == pytest.approx([b[2] for b in raw], rel=1e-12)


def test_latest_values_page_through_every_device_and_metric(client, db):
    want = {}
    for b in db.batches:
        for r in b.rows:
            key = (r[0], r[1])
            if key not in want or (r[2], r[4], r[5]) > want[key][0]:
                want[key] = ((r[2], r[4], r[5]), r[3])
    since = iso(BASE_US - 3600_000_000)
    items, cursor = [], None
    while True:
        params = {"since": since, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = client.get("/readings/latest", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        conforms(r.json(), LatestPage)
        items += r.json()["items"]
        cursor = r.json()["next"]
        if cursor is None:
            break
    got = {(i["device"], i["metric"]): (us_of(i["ts"]), i["value"]) for i in items}
    assert got == {k: (v[0][0], v[1]) for k, v in want.items()}
    r = client.get(
        "/readings/latest",
        params={"since": since, "device": ["dev-001", HOURLY], "metric": "humidity"},
        headers=AUTH,
    )
    assert [(i["device"], i["metric"]) for i in r.json()["items"]] == [
        ("dev-001", "humidity"),
        (HOURLY, "humidity"),
    ]
    # the default window (1 day) reaches back from now: test data is 48 h old
    assert client.get("/readings/latest", headers=AUTH).json()["items"] == []


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "after start"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "at most 31 days"),
        ({"start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00Z"}, "timezone"),
        ({"start": "1960-01-01T00:00:00Z", "end": "1960-01-02T00:00:00Z"}, "1970"),
        ({"start": "yesterday", "end": "2026-01-02T00:00:00Z"}, "datetime"),
        ({"step": 1}, "buckets; at most 1000"),
        ({"step": -60}, "greater than or equal to 0"),
        ({"step": 60, "limit": 5}, "only for raw points"),
        ({"limit": 51}, "at most 50"),
        ({"limit": 0}, "greater than or equal to 1"),
        ({"cursor": "abc"}, "not a cursor"),
        ({"cursor": "1.2.99999999999999999999"}, "not a cursor"),
        ({"metric": "Temp;drop"}, "pattern"),
        ({"metric": None}, "Field required"),
    ],
)
def test_readings_bad_parameters_get_a_readable_422(client, params, needle):
    q = {"metric": "temperature", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
    q.update(params)
    q = {k: v for k, v in q.items() if v is not None}
    r = client.get("/devices/dev-000/readings", params=q, headers=AUTH)
    assert r.status_code == 422, r.text
    assert needle in r.text


def test_bad_device_id_in_the_path_is_422(client):
    r = client.get(
        "/devices/bad'id/readings?metric=t&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z",
        headers=AUTH,
    )
    assert r.status_code == 422
    assert client.get("/devices/-x", headers=AUTH).status_code == 422


def test_latest_bad_parameters(client):
    for params in (
        {"limit": 51},
        {"cursor": "nodivider"},
        {"cursor": "a'/b"},
        {"device": "a b"},
        {"since": "2026-01-01"},
        {"metric": ["x"] * 65},
    ):
        r = client.get("/readings/latest", params=params, headers=AUTH)
        assert r.status_code == 422, (params, r.text)


# ---- devices ----------------------------------------------------------------------------


def test_register_get_update_and_filter_devices(client):
    odd = 'o\'brien \\ "roof" ünïcode'
    body = {
        "device": "reg-1",
        "location": odd,
        "firmware": "1.2.0",
        "tags": {"site": "north", "rack": "7"},
    }
    r = client.post("/devices", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    created = r.json()
    assert {k: created[k] for k in body} == body
    assert client.post("/devices", json=body, headers=AUTH).status_code == 409
    assert client.get("/devices/reg-1", headers=AUTH).json() == created
    for i in range(2, 6):
        r = client.post(
            "/devices",
            headers=AUTH,
            json={
                "device": f"reg-{i}",
                "firmware": "1.3.0" if i % 2 else "1.2.0",
                "tags": {"site": "south"} if i > 3 else {},
            },
        )
        assert r.status_code == 201
    r = client.patch("/devices/reg-1", json={"firmware": "1.3.0"}, headers=AUTH)
    assert r.status_code == 200
    updated = r.json()
    assert updated["firmware"] == "1.3.0" and updated["location"] == odd
    assert updated["tags"] == body["tags"] and updated["updated"] > created["updated"]
    # PATCH twice in the same microsecond still wins: `updated` strictly increases
    r2 = client.patch("/devices/reg-1", json={"tags": {"site": "west"}}, headers=AUTH).json()
    assert r2["tags"] == {"site": "west"} and r2["updated"] > updated["updated"]
    assert client.get("/devices/reg-1", headers=AUTH).json() == r2

    def names(**params):
        r = client.get("/devices", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        return [d["device"] for d in r.json()["items"]]

    assert names() == ["reg-1", "reg-2", "reg-3", "reg-4", "reg-5"]
    assert names(firmware="1.3.0") == ["reg-1", "reg-3", "reg-5"]
    assert names(tag="site=south") == ["reg-4", "reg-5"]
    assert names(tag="site") == ["reg-1", "reg-4", "reg-5"]
    assert names(tag=["site=south", "site"], firmware="1.3.0") == ["reg-5"]
    assert names(location=odd) == ["reg-1"]
    assert names(tag="site=north") == []  # an old row's tags no longer match
    # pagination: `after` continues where `next` left off
    r = client.get("/devices", params={"limit": 2}, headers=AUTH).json()
    assert [d["device"] for d in r["items"]] == ["reg-1", "reg-2"] and r["next"] == "reg-2"
    r = client.get("/devices", params={"limit": 2, "after": "reg-4"}, headers=AUTH).json()
    assert [d["device"] for d in r["items"]] == ["reg-5"] and r["next"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"device": "bad id"},
        {"device": ""},
        {"device": "x" * 65},
        {"device": "ok-1", "unknown": 1},
        {"device": "ok-1", "tags": {f"k{i}": "v" for i in range(65)}},
        {"device": "ok-1", "tags": {"bad key": "v"}},
        {"device": "ok-1", "location": "line\nbreak"},
        {"device": "ok-1", "firmware": "f" * 65},
        {"location": "nowhere"},
    ],
)
def test_register_refuses_bad_bodies(client, body):
    r = client.post("/devices", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert client.get("/devices/ok-1", headers=AUTH).status_code == 404


def test_update_and_get_unknown_device_is_404_and_bad_update_is_422(client):
    assert client.patch("/devices/nobody", json={}, headers=AUTH).status_code == 404
    assert client.get("/devices/nobody", headers=AUTH).status_code == 404
    assert client.patch("/devices/reg-1", json={"device": "x"}, headers=AUTH).status_code == 422
    for params in ({"tag": "bad key=v"}, {"tag": "k=a\x01"}, {"limit": 51}, {"after": "a b"}):
        assert client.get("/devices", params=params, headers=AUTH).status_code == 422, params


# ---- lineage and health -----------------------------------------------------------------


def test_lineage_names_the_batch_gateway_and_message_of_a_reading(client, db):
    for b in (db.batches[0], db.batches[-1]):
        for row in (b.rows[0], b.rows[-1]):
            device, metric, ts, value, boot, seq, batch_seq, device_ts = row
            r = client.get(f"/lineage/{device}/{boot}/{seq}", headers=AUTH)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["reading"]["metric"] == metric and body["reading"]["value"] == value
            assert us_of(body["reading"]["ts"]) == ts
            assert body["reading"]["device_ts_us"] == device_ts
            assert body["reading"]["batch_seq"] == batch_seq == b.seq
            batch = body["batch"]
            assert (batch["device"], batch["boot"], batch["seq"]) == (device, boot, b.seq)
            assert batch["gateway"] == GATEWAY and batch["msg_id"] == b.msg_id
            assert batch["readings"] == len(b.rows) and batch["stream"] == "TELEMETRY"
            assert batch["stream_seq"] >= 1 and batch["deliveries"] >= 1


def test_lineage_of_no_reading_is_404_and_bad_ids_are_422(client):
    assert client.get("/lineage/dev-000/9/0", headers=AUTH).status_code == 404
    for url in (
        "/lineage/dev-000/-1/0",
        "/lineage/dev-000/1/x",
        f"/lineage/dev-000/{2**32}/0",
        f"/lineage/dev-000/1/{2**64}",
    ):
        assert client.get(url, headers=AUTH).status_code == 422, url


def test_health_reports_newest_first_with_pages(client):
    r = client.get("/devices/dev-000/health", params={"limit": 2}, headers=AUTH)
    assert r.status_code == 200
    first = r.json()
    got = [(i["boot"], i["uptime_s"]) for i in first["items"]]
    r = client.get(
        "/devices/dev-000/health", params={"limit": 2, "cursor": first["next"]}, headers=AUTH
    )
    got += [(i["boot"], i["uptime_s"]) for i in r.json()["items"]]
    assert r.json()["next"] is None
    assert got == sorted(((b, u) for _, b, u in HEALTH), reverse=True)
    assert first["items"][0]["gateway"] == GATEWAY and first["items"][0]["firmware"] == "1.4.2"
    assert client.get("/devices/nobody/health", headers=AUTH).json() == {"items": [], "next": None}
    for params in ({"cursor": "1"}, {"cursor": "a.b"}, {"limit": 51}):
        assert client.get("/devices/dev-000/health", params=params, headers=AUTH).status_code == 422


# ---- ops and the OpenAPI document -------------------------------------------------------


def test_healthz_and_metrics_are_open_and_count_requests_by_route(client):
    assert client.get("/healthz").json() == {"status": "ok", "engine": "chdb", "detail": ""}
    client.get("/devices", headers=AUTH)
    client.get("/devices")
    client.get("/no/such/path")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'ringtail_api_requests_total{method="GET",route="list_devices",status="200"}' in text
    assert 'ringtail_api_requests_total{method="GET",route="list_devices",status="401"}' in text
    assert 'route="unmatched",status="404"' in text
    assert "ringtail_api_request_seconds_bucket" in text


def test_live_page_is_served_without_data_and_reads_with_the_token(client):
    r = client.get("/live")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    # no data in the page itself: its script fetches with the bearer token
    assert "dev-000" not in page
    assert "/readings/latest" in page and "Authorization" in page
    assert "/live" not in client.get("/openapi.json").text


def test_api_on_a_server_store_and_503_when_the_server_goes_away(tmp_path):
    """The clickhouse-connect path (chfront: ClickHouse's HTTP interface over chDB in another
    process): the API answers through it, and when it stops, /healthz and data routes say
    503 rather than hang or 500."""
    front = ChFront(tmp_path / "front").start()
    store = ServerStore(front.url, timeout_s=2)
    try:
        migrate(store)
        app = create_app(ApiSettings(), store, {TOKEN: "t"})
        with TestClient(app) as c:
            assert c.get("/healthz").json()["engine"] == "server"
            assert c.post("/devices", json={"device": "srv-1"}, headers=AUTH).status_code == 201
            assert c.get("/devices", headers=AUTH).json()["items"][0]["device"] == "srv-1"
            front.stop()
            r = c.get("/healthz")
            assert r.status_code == 503 and r.json()["status"] == "unavailable"
            r = c.get("/devices", headers=AUTH)
            assert r.status_code == 503 and r.json() == {"detail": "database unavailable"}
    finally:
        store.close()
        front.stop()


def test_openapi_document_is_one_a_generator_accepts(client):
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert all(i.isidentifier() for i in ids)  # valid function names in every generator
    refs = set()

    def walk(x):
        if isinstance(x, dict):
            if "$ref" in x:
                refs.add(x["$ref"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
    schemas = doc["components"]["schemas"]
    assert all(r.startswith("#/components/schemas/") for r in refs)
    assert {r.rsplit("/", 1)[1] for r in refs} <= set(schemas)
    assert all(n.isidentifier() for n in schemas)
    for item in doc["paths"].values():
        for op in item.values():
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok and all("content" in op["responses"][c] for c in ok)


# ---- the command --------------------------------------------------------------------------


def test_cloud_api_command_prints_a_generated_token_serves_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {**os.environ, "RINGTAIL_CHDB_PATH": str(tmp_path / "ch")}
    env.pop("RINGTAIL_API_TOKENS", None)
    env.pop("CLICKHOUSE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringtail.cli", "cloud", "api", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        token = None
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Bearer " in line:
                token = line.split("Bearer ", 1)[1].strip()
            if "Uvicorn running" in line or "Application startup complete" in line:
                break
        assert token is not None and len(token) >= 40
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(f"{url}/healthz"), 30, "the API")
        req = urllib.request.Request(f"{url}/devices")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 401
        e.value.close()  # an HTTPError holds the response's socket
        req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read()) == {"items": [], "next": None}
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    assert rc == 0


def test_cloud_api_command_exits_2_on_a_placeholder_token(tmp_path):
    env = {**os.environ, "RINGTAIL_API_TOKENS": "admin:changethis"}
    r = subprocess.run(
        [sys.executable, "-m", "ringtail.cli", "cloud", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "api.tokens" in r.stderr


def test_non_finite_values_come_back_as_null_and_a_reading_without_batch_has_null_lineage(
    client,
):
    """A device may send NaN or ±inf (the protocol does not forbid them); JSON has no such
    numbers. Inserted through the store with the writer's schema (no batch row)."""
    # a day of its own, before every other test's ranges and `since`
    t = BASE_US - 2 * 86_400_000_000
    store = client.app.state.store
    store.command(
        "INSERT INTO readings (device, metric, ts, value, boot, seq, batch_seq, device_ts, "
        "time_source) VALUES "
        + ", ".join(
            f"('dev-nan', 'temperature', fromUnixTimestamp64Micro({t + i * 1_000_000}, 'UTC'), "
            f"{v}, 1, {i}, 0, 0, 'device_clock')"
            for i, v in enumerate(["nan", "inf", "-inf", "1.5"])
        )
    )
    q = {"metric": "temperature", "start": iso(t), "end": iso(t + 60_000_000)}
    points = client.get("/devices/dev-nan/readings", params=q, headers=AUTH).json()["points"]
    assert [p["value"] for p in points] == [None, None, None, 1.5]
    r = client.get("/devices/dev-nan/readings", params={**q, "step": 60}, headers=AUTH).json()
    assert r["source"] == "1m"
    assert r["buckets"][0]["count"] == 4 and r["buckets"][0]["sum"] is None
    r = client.get("/readings/latest", params={"device": "dev-nan", "since": iso(t)}, headers=AUTH)
    assert r.json()["items"][0]["value"] == 1.5
    r = client.get("/lineage/dev-nan/1/1", headers=AUTH)
    assert r.status_code == 200
    assert r.json()["reading"]["value"] is None and r.json()["batch"] is None


def test_api_config_file_and_environment_with_errors_that_name_the_field(tmp_path):
    f = tmp_path / "cloud.toml"
    f.write_text(
        "[api]\nport = 9001\nmax_page = 500\ndefault_page = 100\n"
        '[clickhouse]\nurl = "http://ch:8123/ringtail"\n[nats]\nurl = "nats://n:4222"\n'
    )
    cfg = load_api_config(f, {"RINGTAIL_API_HOST": "0.0.0.0"})
    assert (cfg.api.port, cfg.api.max_page, cfg.api.host) == (9001, 500, "0.0.0.0")
    assert cfg.clickhouse.url == "http://ch:8123/ringtail"
    cfg = load_api_config(f, {"CLICKHOUSE_URL": "", "RINGTAIL_CHDB_PATH": "/data/ch"})
    assert cfg.clickhouse.url == "" and str(cfg.clickhouse.chdb_path) == "/data/ch"
    for text, field in (
        ("[api]\nprot = 1\n", "api.prot: unknown field"),
        ("[api]\nport = 70000\n", "api.port"),
        ("[api]\ndefault_page = 20000\n", "api.default_page"),
        ('[clickhouse]\nurl = "tcp://x"\n', "clickhouse.url"),
        ("[web]\n", "unknown section [web]"),
    ):
        f.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(field)):
            load_api_config(f, {})
    with pytest.raises(ConfigError, match=re.escape("api.port (from $RINGTAIL_API_PORT)")):
        load_api_config(None, {"RINGTAIL_API_PORT": "eighty"})


def test_cloud_api_command_waits_for_clickhouse_then_exits_4(tmp_path):
    """Startup waits `startup_wait_s` for a server that does not answer, then exit 4."""
    f = tmp_path / "api.toml"
    f.write_text("[api]\nstartup_wait_s = 1.0\n[clickhouse]\ntimeout_s = 1.0\n")
    env = {**os.environ, "CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}"}
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "ringtail.cli", "cloud", "api", "--config", str(f)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 4, r.stderr
    assert "ClickHouse did not answer" in r.stderr and "waiting for ClickHouse" in r.stderr
    assert time.monotonic() - t0 >= 1.0
