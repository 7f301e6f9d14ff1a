"""Every firmware module compiles with mpy-cross (the .mpy sizes are in the metrics)."""

from __future__ import annotations

from pathlib import Path

from . import mprun


def test_every_firmware_module_compiles(compiled: tuple[Path, dict[str, str]]) -> None:
    out, errors = compiled
    mods = mprun.firmware_modules() + mprun.script_modules()
    assert mods, "no firmware modules found"
    assert not errors, "mpy-cross failed:\n" + "\n".join(f"{k}: {v}" for k, v in errors.items())
    for src in mods:
        mpy = out / (src.stem + ".mpy")
        assert mpy.exists() and mpy.stat().st_size > 0, f"{src.name} did not compile"
