"""The API's one settings object: a TOML `[api]` table, then the environment, checked.

    RINGTAIL_API_HOST    api.host      (default 127.0.0.1)
    RINGTAIL_API_PORT    api.port      (default 8000)
    RINGTAIL_API_TOKENS  api.tokens    comma-separated bearer tokens, each `name:secret`
                                       or a bare `secret` (named `token<i>`)

There is no default secret. With no token configured, `resolve_tokens` makes one at start
(`secrets.token_urlsafe`, 256 bits) which the CLI prints; it lives only in that process.
A configured token shorter than MIN_TOKEN_CHARS or one of the well-known placeholders
(`changethis`, `secret`, ...) is refused, so a copied example never guards real data.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from cloud.config import ClickhouseSection, WriterConfig, check_config
from ringtail.config import (
    ConfigError,
    check_sections,
    convert,
    read_toml,
    require,
    section_values,
)

# 24 URL-safe characters carry >= 143 bits when random; anything shorter is a password.
MIN_TOKEN_CHARS = 24
_PLACEHOLDERS = frozenset(
    {"changethis", "changeme", "change-me", "secret", "token", "password", "example", "xxx"}
)
TOKEN_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    tokens: str = ""  # "name:secret,name2:secret2"; empty: one generated at start
    # Limits on one request, so a single query cannot hold the engine (chDB runs one
    # statement at a time in this process) or the response cannot outgrow memory.
    max_page: int = 10_000  # rows (raw points, devices, health reports) per response
    max_buckets: int = 10_000  # aggregated points per range response
    max_range_days: int = 400  # a range's end - start; readings' TTL is 400 days
    default_page: int = 1000
    latest_window_days: int = 1  # latest values look this far back unless told otherwise
    # Startup waits this long for ClickHouse to answer before giving up (exit 4).
    startup_wait_s: float = 30.0


_ENV = {
    "RINGTAIL_API_HOST": "host",
    "RINGTAIL_API_PORT": "port",
    "RINGTAIL_API_TOKENS": "tokens",
}


@dataclass(frozen=True, slots=True)
class ApiConfig:
    api: ApiSettings
    clickhouse: ClickhouseSection  # the writer's section: the same database, same fields


def load_api_config(path: Path | None, env: Mapping[str, str] | None = None) -> ApiConfig:
    """`[api]` and `[clickhouse]` of the file (`[nats]` is the writer's and not read here),
    then the environment, checked. Raises `ConfigError` naming the field."""
    raw: dict[str, Any] = {} if path is None else read_toml(path)
    source = "config" if path is None else str(path)
    check_sections(raw, {"api", "clickhouse", "nats"}, source)
    env = os.environ if env is None else env
    # The clickhouse section and its variables exactly as the writer reads them, checked by
    # the writer's own rules (cloud/config.py), so one file serves both.
    ch = ClickhouseSection(
        **section_values(ClickhouseSection, raw.get("clickhouse", {}), "clickhouse", source)
    )
    for var, name in (("CLICKHOUSE_URL", "url"), ("RINGTAIL_CHDB_PATH", "chdb_path")):
        if var in env:
            f = next(f for f in fields(ClickhouseSection) if f.name == name)
            value = convert(env[var], f.type, f"clickhouse.{name} (from ${var})", "environment")
            ch = replace(ch, **{name: value})
    check_config(WriterConfig(clickhouse=ch), source)
    return ApiConfig(load_api_settings(raw, source, env), ch)


def load_api_settings(raw: dict[str, Any], source: str, env: Mapping[str, str]) -> ApiSettings:
    settings = ApiSettings(**section_values(ApiSettings, raw.get("api", {}), "api", source))
    for var, name in _ENV.items():
        if var in env:
            f = next(f for f in fields(ApiSettings) if f.name == name)
            value = convert_env(env[var], f.type, f"api.{name} (from ${var})")
            settings = replace(settings, **{name: value})
    check(settings, source)
    return settings


def convert_env(text: str, annotation: Any, name: str) -> Any:
    kind = annotation if isinstance(annotation, str) else annotation.__name__
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"environment: {name}: expected an integer, got {text!r}") from None
    return convert(text, annotation, name, "environment")


def parse_tokens(text: str, source: str = "config") -> dict[str, str]:
    """`name:secret,...` (or bare secrets) → {secret: name}. Refuses placeholders."""
    out: dict[str, str] = {}
    for i, item in enumerate(p.strip() for p in text.split(",")):
        if not item:
            continue
        name, sep, secret = item.rpartition(":")
        if not sep:
            name = f"token{i}"
        require(
            bool(name) and set(name) <= TOKEN_NAME_CHARS,
            source,
            "api.tokens",
            f"token name {name!r} must be letters, digits, _ - .",
        )
        require(
            secret.lower() not in _PLACEHOLDERS and len(secret) >= MIN_TOKEN_CHARS,
            source,
            "api.tokens",
            f"token {name!r} is a placeholder or shorter than {MIN_TOKEN_CHARS} characters; "
            'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"',
        )
        require(secret not in out, source, "api.tokens", f"token {name!r} repeats another")
        out[secret] = name
    return out


def resolve_tokens(settings: ApiSettings) -> tuple[dict[str, str], str | None]:
    """The configured tokens, or one generated now: ({secret: name}, generated or None)."""
    tokens = parse_tokens(settings.tokens)
    if tokens:
        return tokens, None
    generated = secrets.token_urlsafe(32)
    return {generated: "local"}, generated


def check(s: ApiSettings, source: str) -> None:
    def need(ok: bool, name: str, what: str) -> None:
        require(ok, source, f"api.{name}", what)

    need(bool(s.host), "host", "must not be empty")
    need(0 <= s.port <= 65535, "port", "must be 0..65535")
    need(1 <= s.max_page <= 1_000_000, "max_page", "must be 1..1000000")
    need(1 <= s.default_page <= s.max_page, "default_page", "must be 1..api.max_page")
    need(1 <= s.max_buckets <= 1_000_000, "max_buckets", "must be 1..1000000")
    need(1 <= s.max_range_days <= 36_600, "max_range_days", "must be 1..36600")
    need(
        1 <= s.latest_window_days <= s.max_range_days,
        "latest_window_days",
        "must be 1..api.max_range_days",
    )
    need(s.startup_wait_s >= 0, "startup_wait_s", "must be 0 or more")
    parse_tokens(s.tokens, source)
