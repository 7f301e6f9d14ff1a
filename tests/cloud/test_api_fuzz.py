"""OpenAPI-driven fuzz (in the manner of schemathesis, with hypothesis): for every operation
in the app's own OpenAPI document, requests built from the declared parameter and body
schemas, mixed with values that break them, never get a server error, and every answer is
one the document declares or a 401/422 of the auth and validation layers."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_api import AUTH, BASE_US, HOURLY, fill, iso, open_app

# Values that have broken SQL builders and parsers elsewhere: quotes, escapes, huge and
# negative numbers, odd times, separators of our cursors.
NASTY = [
    "",
    "'",
    "\\",
    "\\'",
    "%",
    "%00",
    "' OR 1=1 --",
    "dev-000'; DROP TABLE readings",
    "a/b",
    "1.2",
    "1.2.3",
    "0.0.0",
    "18446744073709551615.1.1",
    "99999999999999999999.1.1",
    "-1",
    "1e309",
    "NaN",
    "null",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00",
    "1969-12-31T23:59:59Z",
    "2106-01-01T00:00:00Z",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00-12:00",
    "9" * 30,
    "é",
    "\u202e",
    "x" * 300,
]
junk = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
json_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
times = st.datetimes(
    min_value=datetime(1960, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.isoformat())


# Like schemathesis' explicit examples: values near the data for parameters whose schema
# alone would almost never reach a query (a random start/end pair is rarely a valid range).
DEVICES = st.sampled_from(["dev-000", "dev-001", HOURLY, "reg-0", "nobody"])
NEAR = st.integers(-3 * 3600, 9 * 3600).map(lambda s: iso(BASE_US + s * 1_000_000))
HINTS: dict[str, st.SearchStrategy[Any]] = {
    "device": DEVICES,
    "metric": st.sampled_from(["temperature", "humidity", "nothing"]),
    "start": NEAR,
    "end": NEAR,
    "since": NEAR,
    "step": st.sampled_from([0, 1, 60, 90, 300, 3600, 7200, 86400]),
    "boot": st.sampled_from([0, 1, 2]),
    "seq": st.integers(0, 2000),
    "limit": st.integers(1, 120),
    "cursor": st.sampled_from([None, "0.0.0", "dev-000/humidity", "1.60"]),
    "after": st.sampled_from([None, "dev-000", "reg-0"]),
}


def resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def from_schema(doc: dict, schema: dict) -> st.SearchStrategy[Any]:
    """Values that satisfy `schema` (the subset FastAPI emits), as JSON values."""
    schema = resolve(doc, schema)
    if "anyOf" in schema:
        return st.one_of([from_schema(doc, s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**64)), schema.get("maximum", 2**64))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "string":
        if schema.get("format") == "date-time":
            return times
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: len(s) <= schema.get("maxLength", 10**6)
            )
        return st.text(string.printable, max_size=schema.get("maxLength", 50))
    if kind == "array":
        return st.lists(from_schema(doc, schema.get("items", {})), max_size=5)
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        extra = schema.get("additionalProperties")
        base = st.fixed_dictionaries(
            {k: from_schema(doc, v) for k, v in props.items() if k in required},
            optional={k: from_schema(doc, v) for k, v in props.items() if k not in required},
        )
        if isinstance(extra, dict):
            return st.dictionaries(
                from_schema(doc, extra.get("propertyNames", {"type": "string"})),
                from_schema(doc, extra),
                max_size=5,
            )
        return base
    return json_junk


def operations() -> list[tuple[str, str]]:
    """Every (method, path) of the document, read from an app whose store is never used
    (building the document runs no query)."""
    from types import SimpleNamespace

    from cloud.api import ApiSettings, create_app

    unused = SimpleNamespace(engine="none")
    app = create_app(ApiSettings(), unused, {"x" * 30: "t"})  # type: ignore[arg-type]
    doc = app.openapi()
    return [(m, p) for p, item in doc["paths"].items() for m in item]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    db = fill(tmp_path_factory.mktemp("fuzz"))
    app, store = open_app(
        db.path, max_page=100, default_page=20, max_buckets=2000, max_range_days=31
    )
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            yield c
    finally:
        store.close()


@pytest.mark.parametrize(("method", "path"), operations())
def test_no_request_built_from_the_openapi_document_gets_a_server_error(client, method, path):
    doc = client.get("/openapi.json").json()
    op = doc["paths"][path][method]
    declared = {int(c) for c in op["responses"]}

    @settings(
        max_examples=100,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        url, params = path, {}
        # Half the requests stay within hints and schemas, so requests that pass validation
        # reach the queries often; the other half mix in junk.
        clean = data.draw(st.booleans())
        for p in op.get("parameters", []):
            valid = from_schema(doc, p["schema"])
            if clean:
                kinds = ["hint"] if p.get("required") else ["hint", "absent"]
            else:
                kinds = ["hint", "valid", "junk", "absent"]
            choice = data.draw(st.sampled_from(kinds))
            if choice == "hint":
                hint = HINTS.get(p["name"])
                if hint is None:
                    choice = "valid"
                else:
                    valid = hint
            if choice == "absent":
                if p["in"] == "path":
                    choice = "junk"
                else:
                    continue
            value = data.draw(junk if choice == "junk" else valid)
            if p["in"] == "path":
                text = value if isinstance(value, str) else json.dumps(value)
                url = url.replace("{" + p["name"] + "}", quote(str(text), safe="") or "%20")
            elif value is not None:
                params[p["name"]] = value
        kwargs: dict[str, Any] = {"params": params}
        if op.get("security") and clean:
            kwargs["headers"] = AUTH
        elif op.get("security"):
            kwargs["headers"] = data.draw(
                st.sampled_from([AUTH] * 8 + [{}, {"Authorization": "Bearer x"}])
            )
        body = op.get("requestBody")
        if body is not None:
            schema = body["content"]["application/json"]["schema"]
            kwargs["json"] = data.draw(st.one_of(from_schema(doc, schema), json_junk))
        r = client.request(method.upper(), url, **kwargs)
        assert r.status_code < 500, (method, url, kwargs, r.status_code, r.text)
        assert r.status_code in declared | {401, 404, 422}, (url, r.status_code, r.text)
        if r.headers.get("content-type", "").startswith("application/json"):
            r.json()

    run()
