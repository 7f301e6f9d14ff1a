"""Reading TOML configuration into frozen dataclasses, with errors that name the field.

Shared by every service (`gateway/config.py`, `cloud/config.py`): each declares its
sections as dataclasses whose defaults run out of the box, and its own cross-field checks.
A field's annotation (bool, int, float, str, Path) decides what a value may be; an unknown
section or field is an error, never ignored.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the file and the field."""


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def check_sections(raw: dict[str, Any], known: set[str], source: str) -> None:
    for key in raw:
        if key not in known:
            raise ConfigError(f"{source}: unknown section [{key}]")


def section_values(
    cls: type, raw: Any, section: str, source: str, only: set[str] | None = None
) -> dict[str, Any]:
    """The fields of `raw` (one TOML table) converted for dataclass `cls`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{section}] must be a table")
    known = {f.name: f for f in fields(cls) if only is None or f.name in only}
    out = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{source}: {section}.{key}: unknown field")
        out[key] = convert(value, known[key].type, f"{section}.{key}", source)
    return out


def convert(value: Any, annotation: Any, name: str, source: str) -> Any:
    """`value` as the annotated type, or ConfigError naming `name`."""
    kind = annotation if isinstance(annotation, str) else annotation.__name__
    if kind == "bool":
        if type(value) is not bool:
            raise ConfigError(f"{source}: {name}: expected true or false, got {value!r}")
        return value
    if kind == "int":
        if type(value) is not int:
            raise ConfigError(f"{source}: {name}: expected an integer, got {value!r}")
        return value
    if kind == "float":
        if type(value) not in (int, float):
            raise ConfigError(f"{source}: {name}: expected a number, got {value!r}")
        return float(value)
    if type(value) is not str:
        raise ConfigError(f"{source}: {name}: expected a string, got {value!r}")
    if kind == "Path":
        if not value:
            raise ConfigError(f"{source}: {name}: expected a path, got an empty string")
        return Path(value)
    return value


def require(ok: bool, source: str, name: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {name}: {what}")
