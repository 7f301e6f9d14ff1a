"""Start-up steps shared by `ringtail cloud api` and `ringtail cloud run`: the API settings
with command-line overrides, the store opened with a deadline, and the token announcement."""

from __future__ import annotations

import sys
from dataclasses import replace

from cloud.api.settings import ApiConfig, ApiSettings, resolve_tokens
from cloud.config import ClickhouseSection
from cloud.store import Store, StoreError, open_store


class StartupError(Exception):
    """Start-up cannot go on; `exit_code` is the command's exit status."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def api_settings(
    config: ApiConfig, host: str | None, port: int | None
) -> tuple[ApiSettings, dict[str, str], str | None]:
    """(settings with --host/--port applied, accepted tokens, the generated one or None)."""
    settings = config.api
    if host is not None:
        settings = replace(settings, host=host)
    if port is not None:
        settings = replace(settings, port=port)
    tokens, generated = resolve_tokens(settings)
    return settings, tokens, generated


def open_store_waiting(ch: ClickhouseSection, wait_s: float, chdb_hint: str) -> Store:
    """The store, once ClickHouse answers within `wait_s`; StartupError(4) otherwise. With
    chDB, the hint says what may hold its directory."""
    from cloud.api.app import wait_for_store

    try:
        return wait_for_store(lambda: open_store(ch.url, ch.chdb_path, ch.timeout_s), wait_s)
    except StoreError as e:
        hint = "" if ch.url else f" (chDB allows one process per directory: {chdb_hint})"
        raise StartupError(4, f"ClickHouse did not answer: {e}{hint}") from None


def announce_token(command: str, generated: str | None) -> None:
    """Print a generated token: printed, never logged to a file by us, so this terminal
    holds the only copy."""
    if generated is None:
        return
    print(
        f"ringtail {command}: no token configured (RINGTAIL_API_TOKENS); "
        f"this run accepts:\n  Authorization: Bearer {generated}",
        file=sys.stderr,
        flush=True,
    )
