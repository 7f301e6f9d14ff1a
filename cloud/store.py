"""The two ClickHouse engines behind one small interface: chDB in-process, or a server.

Both take the same SQL and the same insert bytes (an Arrow IPC stream), so the writer, the
migrations and the tests do not know which one they talk to. Calls are blocking; the writer
runs them in a worker thread. Results of `query` come back as JSONCompact rows on both
engines, so values compare equal whichever engine produced them.

chDB allows one process per data directory (and one directory per process at a time): a
`ChdbStore` must be closed before another opens, and a second process on the same path
fails to open it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Protocol

from ringtail.logs import redact_url

# Unquoted 64-bit integers in JSON output (default quotes them as strings), on both engines.
_JSON_SETTINGS = {"output_format_json_quote_64bit_integers": 0}
_SETTING_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class StoreError(RuntimeError):
    """ClickHouse refused or could not run a statement (down, timeout, bad SQL)."""


class Store(Protocol):
    engine: str

    def command(self, sql: str) -> None: ...

    def query(self, sql: str) -> list[list[Any]]: ...

    def insert_arrow(
        self, table: str, columns: list[str], stream: bytes, settings: dict[str, Any]
    ) -> int: ...

    def close(self) -> None: ...


def settings_clause(settings: dict[str, Any]) -> str:
    """`SETTINGS a = 1, b = 'x'`, with names checked and strings quoted."""
    parts = []
    for name, value in settings.items():
        if not _SETTING_NAME.fullmatch(name):
            raise ValueError(f"not a setting name: {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            text = str(value).replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"{name} = '{text}'")
        else:
            parts.append(f"{name} = {value}")
    return "SETTINGS " + ", ".join(parts) if parts else ""


class ChdbStore:
    """chDB, the ClickHouse engine in this process, data under `path`."""

    engine = "chdb"

    def __init__(self, path: Path) -> None:
        from chdb import ChdbError, session  # the cloud extra; imported only when used

        self._errors: tuple[type[BaseException], ...] = (ChdbError, RuntimeError)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._session = session.Session(str(path))
        except self._errors as e:
            raise StoreError(f"cannot open chDB at {path}: {e}") from e
        for name, value in _JSON_SETTINGS.items():
            self.command(f"SET {name} = {value}")

    def command(self, sql: str) -> None:
        self._run(sql, "TSV")

    def query(self, sql: str) -> list[list[Any]]:
        out = self._run(sql, "JSONCompact")
        return json.loads(out.bytes())["data"] if out.bytes() else []

    def insert_arrow(
        self, table: str, columns: list[str], stream: bytes, settings: dict[str, Any]
    ) -> int:
        sql = f"INSERT INTO {table} ({', '.join(columns)}) {settings_clause(settings)}"
        try:
            with self._session.send_insert(sql, "ArrowStream") as ins:
                ins.append(stream)
                return int(ins.finish().rows_written)
        except self._errors as e:
            raise StoreError(f"insert into {table} failed: {e}") from e

    def _run(self, sql: str, fmt: str) -> Any:
        try:
            return self._session.query(sql, fmt)
        except self._errors as e:
            raise StoreError(str(e).strip()) from e

    def close(self) -> None:
        self._session.close()


class ServerStore:
    """A ClickHouse server over HTTP(S) through clickhouse-connect. `url` is
    `http[s]://[user[:password]@]host:port[/database]`."""

    engine = "server"

    def __init__(self, url: str, timeout_s: float, compress: bool = True) -> None:
        import clickhouse_connect  # the cloud extra; imported only when used
        from clickhouse_connect.driver.exceptions import ClickHouseError

        self._errors: tuple[type[BaseException], ...] = (ClickHouseError, OSError)
        self.url = url
        try:
            self._client = clickhouse_connect.get_client(
                dsn=url,
                compress=compress,
                connect_timeout=timeout_s,
                send_receive_timeout=timeout_s,
                query_retries=0,
                settings=dict(_JSON_SETTINGS),
                autogenerate_session_id=False,
            )
        except self._errors as e:
            raise StoreError(f"cannot reach ClickHouse at {redact_url(url)}: {e}") from e

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except self._errors as e:
            raise StoreError(str(e).strip()) from e

    def query(self, sql: str) -> list[list[Any]]:
        try:
            raw = self._client.raw_query(sql, fmt="JSONCompact")
        except self._errors as e:
            raise StoreError(str(e).strip()) from e
        return json.loads(raw)["data"] if raw else []

    def insert_arrow(
        self, table: str, columns: list[str], stream: bytes, settings: dict[str, Any]
    ) -> int:
        try:
            summary = self._client.raw_insert(
                table, columns, stream, settings=settings, fmt="ArrowStream"
            )
        except self._errors as e:
            raise StoreError(f"insert into {table} failed: {e}") from e
        return int(summary.written_rows)

    def close(self) -> None:
        self._client.close()


def open_store(clickhouse_url: str, chdb_path: Path, timeout_s: float) -> Store:
    """A server store when a URL is given, else chDB under chdb_path. Raises StoreError."""
    if clickhouse_url:
        return ServerStore(clickhouse_url, timeout_s)
    return ChdbStore(chdb_path)
