"""The firmware as a ROMFS image, and running code from one on the unix port.

MicroPython >= 1.25 boards with a ROMFS partition mount it at `/rom` at boot and put `/rom`
and `/rom/lib` on `sys.path` after `''` and `.frozen` (a PYBD shows
`['', '.frozen', '/rom', '/rom/lib', '/flash', '/flash/lib']`; an ESP32 or RP2040, whose
filesystem is `/`, `['', '.frozen', '/rom', '/rom/lib', '/lib']`). A `.mpy` imported from
there runs in place: its bytecode and constants stay in flash, and only what the module
builds (functions, classes, module globals, qstrs) takes heap. Loaded from a filesystem,
the whole `.mpy` is copied into the heap first.

- `compile_sources` / `image_of` / `build`: mpy-cross the firmware modules and pack the
  `.mpy` files at the image's root (mpremote's `VfsRomWriter`, the format `mpremote romfs
  build|deploy` writes). main.py and boot.py are not in the image: a board runs them as
  source files from its filesystem at boot (they then import the rest from `/rom`).
- `mount_source` / `launch`: the one implementation of "mount a ROMFS image file at /rom on
  the unix port and leave exactly the free heap of a board", used by the virtual board
  (ringtail.device.virtual) and the firmware tests (tests/firmware/mprun.py). The unix port
  cannot map a file into its address space, so the image is read into the heap first; then
  a pad is allocated until `gc.mem_free()` equals that of a fresh `micropython -X
  heapsize=HEAP` (`free_heap`). The process therefore gets `heapsize(image, free)`: that
  free heap + the image + `SLACK` for the launcher and the GC's tables, and the code it
  runs sees a board's data heap with the bytecode outside it, as on a board.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ringtail.device.tools import FIRMWARE, tool

MOUNT_POINT = "/rom"
VIRTUAL_IMAGE = "romfs.img"  # a virtual board's ROMFS partition: a file in its directory
SOURCE_FILES = ("main.py", "boot.py")  # run as source by a board at boot: never in the image
HEADER = b"\xd2\xcd\x31"  # a ROMFS image starts with these bytes
SLACK = 16 * 1024  # heap for the launcher, the mount and the GC's tables beyond image + free


class RomfsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Module:
    name: str  # X.mpy, at the image's root
    size: int
    sha256: str


@dataclass
class RomImage:
    """A ROMFS image of compiled modules."""

    data: bytes
    modules: list[Module] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def write(self, path: Path) -> Path:
        path.write_bytes(self.data)
        return path


# -- building --------------------------------------------------------------------------------


def compile_sources(sources: Iterable[Path], out: Path) -> tuple[list[Path], dict[str, str]]:
    """mpy-cross each source into `out` as X.mpy. Returns the .mpy files written and, by
    source file name, the compiler's output for each one that failed."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    errors: dict[str, str] = {}
    for src in sources:
        dst = out / (src.stem + ".mpy")
        done = subprocess.run(
            [tool("mpy-cross"), "-o", str(dst), str(src)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0 or not dst.exists():
            errors[src.name] = (done.stdout + done.stderr).strip()
            continue
        written.append(dst)
    return written, errors


def image_of(files: Iterable[Path]) -> RomImage:
    """A ROMFS image holding `files` at its root, in name order (what `mpremote romfs build`
    makes of a directory holding just them)."""
    from mpremote.romfs import VfsRomWriter

    writer = VfsRomWriter()
    modules = []
    for path in sorted(files, key=lambda p: p.name):
        data = path.read_bytes()
        writer.mkfile(path.name, data)
        modules.append(Module(path.name, len(data), hashlib.sha256(data).hexdigest()))
    return RomImage(bytes(writer.finalise()), modules)


def firmware_sources(firmware: Path = FIRMWARE, exclude: Collection[str] = ()) -> list[Path]:
    """The modules that go into the image: firmware/*.py but main.py, boot.py and `exclude`."""
    return [
        p
        for p in sorted(Path(firmware).glob("*.py"))
        if p.name not in SOURCE_FILES and p.name not in exclude
    ]


def build(
    firmware: Path = FIRMWARE, out: Path | None = None, exclude: Collection[str] = ()
) -> RomImage:
    """Compile the firmware's modules (not main.py / boot.py, nor `exclude`) and return their
    ROMFS image. The .mpy files are left in `out` (a temporary directory if None). Raises
    RomfsError naming every module that does not compile."""
    sources = firmware_sources(firmware, exclude)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="ringtail-romfs-") as tmp:
            return build(firmware, Path(tmp), exclude)
    mpys, errors = compile_sources(sources, out)
    if errors:
        raise RomfsError(
            "mpy-cross failed:\n  " + "\n  ".join(f"{k}: {v}" for k, v in errors.items())
        )
    return image_of(mpys)


# -- running from an image on the unix port ---------------------------------------------------

# MicroPython source defining _rt_mount(image): read the image file into the heap, mount it
# at /rom and put /rom and /rom/lib on sys.path where a board has them (after '' and
# '.frozen'). Returns the image's buffer (the mount refers to it; keep it anyway).
MOUNT_FN = """\
def _rt_mount(name):
    import sys, vfs
    f = open(name, 'rb')
    img = bytearray(f.seek(0, 2))
    f.seek(0)
    f.readinto(img)
    f.close()
    vfs.mount(vfs.VfsRom(img), '/rom')
    i = sys.path.index('.frozen') + 1 if '.frozen' in sys.path else min(1, len(sys.path))
    sys.path[i:i] = ['/rom', '/rom/lib']
    return img
"""

# MicroPython statements, at the top level of the launching script and last before the
# program starts (so that nothing the launcher made is freed afterwards): allocate the pad
# `_rt_pad` until gc.mem_free() is within a GC block (32 bytes) of {free}.
PAD = """\
import gc
_rt_pad = _rt_n = _rt_d = None
gc.collect()
_rt_n = gc.mem_free() - {free}
while _rt_n > 0:
    _rt_pad = None
    gc.collect()
    _rt_pad = bytearray(_rt_n)
    gc.collect()
    _rt_d = gc.mem_free() - {free}
    if -32 < _rt_d < 32:
        break
    _rt_n += _rt_d
_rt_n = _rt_d = None
"""


def pad_source(free: int) -> str:
    """MicroPython statements (top level, last) that leave `free` bytes of heap (see PAD)."""
    return PAD.format(free=int(free))


def mount_source(image: str, free: int, setup: str = "") -> str:
    """MicroPython statements that mount `image` (a path on the unix port) at /rom, run
    `setup` and then leave `free` bytes of heap: the launcher's part of a script. The
    image's buffer is kept in the global `_rt_rom`, the pad in `_rt_pad`."""
    mount = MOUNT_FN + f"_rt_rom = _rt_mount({image!r})\ndel _rt_mount\n"
    return mount + setup + pad_source(free)


def heapsize(image_bytes: int, free: int) -> int:
    """The unix port's -X heapsize for a process that reads an image of `image_bytes` into
    its heap and must then have `free` bytes left."""
    return free + image_bytes + SLACK


@functools.lru_cache(maxsize=16)
def _free_heap(micropython: str, heap: str) -> int:
    code = "import gc; gc.collect(); print(gc.mem_free())"
    out = subprocess.run(
        [micropython, "-X", f"heapsize={heap}", "-c", code],
        env=dict(os.environ, MICROPYPATH=".frozen"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(out.stdout)


def free_heap(heap: str = "64K", micropython: str | None = None) -> int:
    """gc.mem_free() of a fresh `micropython -X heapsize=HEAP`: what a board of that heap
    gives the firmware. Measured once per (micropython, heap)."""
    return _free_heap(micropython or tool("micropython"), heap)


def launch(
    image: Path, free: int, code: str, micropython: str | None = None, setup: str = ""
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run MicroPython `code` on the unix port with `image`
    mounted at /rom and `free` bytes of heap left when `code` starts (`setup` runs before
    the heap is padded: what it keeps does not count against `free`)."""
    source = mount_source(str(image), free, setup) + code
    cmd = [
        micropython or tool("micropython"),
        "-X",
        f"heapsize={heapsize(image.stat().st_size, free)}",
        "-c",
        source,
    ]
    return cmd, dict(os.environ, MICROPYPATH=".frozen")
