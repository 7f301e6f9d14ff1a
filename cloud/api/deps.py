"""What every route depends on, injected with `Annotated`: the store, the settings and the
one authorization check.

`authorize` is the only place that decides whether a request may read or change data.
Today a valid bearer token is enough; roles (a later issue) become a `Principal.roles`
field and a check here, and every data router already depends on it.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic_core import to_json

from cloud.api.settings import ApiSettings
from cloud.store import Store

__all__ = [
    "Auth",
    "FastJSON",
    "Principal",
    "QueryStore",
    "Settings",
    "StoreDep",
    "authorize",
    "quote",
]


class QueryStore:
    """The store shared by every request. Routes are sync functions run in FastAPI's thread
    pool; a chDB session runs one statement at a time and is not safe to share between
    threads, so its calls are serialized by a lock. A server store is a stateless HTTP
    client (no session id) and takes concurrent queries unlocked."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self._lock: threading.Lock | None = threading.Lock() if store.engine == "chdb" else None

    def query(self, sql: str) -> list[list[Any]]:
        if self._lock is None:
            return self.store.query(sql)
        with self._lock:
            return self.store.query(sql)

    def command(self, sql: str) -> None:
        if self._lock is None:
            self.store.command(sql)
            return
        with self._lock:
            self.store.command(sql)


class FastJSON(Response):
    """JSON rendered by pydantic-core's serializer (Rust), about twice as fast as the
    standard library's for the large lists of readings routes return as plain values."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return to_json(content)


def quote(text: str) -> str:
    """A ClickHouse string literal. Backslash and quote are the only characters a
    single-quoted literal interprets, so escaping both makes any text inert."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def get_store(request: Request) -> QueryStore:
    store: QueryStore = request.app.state.store
    return store


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


StoreDep = Annotated[QueryStore, Depends(get_store)]
Settings = Annotated[ApiSettings, Depends(get_settings)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made the request: the name given to its token in `api.tokens`."""

    name: str


# auto_error=False: a missing header is our 401 with WWW-Authenticate, not Starlette's 403.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`")


def authorize(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The request's principal, or 401. Compares against every configured token in constant
    time (hmac.compare_digest), so the answer's timing does not reveal a prefix match."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    given = credentials.credentials.encode()
    tokens: dict[str, str] = request.app.state.tokens
    found = None
    for secret, name in tokens.items():
        if hmac.compare_digest(given, secret.encode()):
            found = name
    if found is None:
        raise _unauthorized("invalid bearer token")
    return Principal(found)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


Auth = Annotated[Principal, Depends(authorize)]
