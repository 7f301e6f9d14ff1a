"""The firmware's own config.json validator (firmware/config.py), run under CPython.

A config the board would refuse must be refused on the host, before anything is written:
the board would fall back to its last good config (or the built-in defaults, which send
to another gateway under another id) and the mistake would show only as silence. The
validator is the firmware's file, not a copy, so host and board cannot disagree.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ringtail.device.tools import FIRMWARE


@functools.lru_cache(maxsize=4)
def load(firmware: Path = FIRMWARE) -> ModuleType:
    """firmware/config.py under a private name, its `import sensor` served from
    firmware/sensor.py for the duration of the import only (firmware/ never goes on
    sys.path: its module names would shadow the host's)."""

    def module(name: str, alias: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(alias, Path(firmware) / f"{name}.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {firmware}/{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    saved = sys.modules.get("sensor")
    sys.modules["sensor"] = module("sensor", "ringtail_fw_sensor")
    try:
        return module("config", "ringtail_fw_config")
    finally:
        if saved is None:
            del sys.modules["sensor"]
        else:
            sys.modules["sensor"] = saved


def problem(cfg: Any, firmware: Path = FIRMWARE) -> str | None:
    """None if the firmware accepts `cfg` (a JSON tree), else its message, which starts
    with the field (e.g. "health_s: must be an integer 5..86400, got 2")."""
    _, error = load(Path(firmware)).validate(cfg)
    return None if error is None else str(error)
