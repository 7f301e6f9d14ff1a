"""A virtual board: the MicroPython unix port behind a pseudo-terminal.

`mpremote` (or any serial tool) opens `VirtualBoard.port`, a `/dev/pts/N` path, exactly as it
opens a USB board's `/dev/ttyACM0`: the raw REPL, file copy and `exec` all go through the
real mpremote. The board's filesystem is its directory (the unix port's root is remounted
there, so `/`, `/lib` and relative paths mean what they mean on a board), and its NOR flash
is `ringtail-flash.img` in that directory (firmware/hal_unix.py), so both survive power
cycles.

Its ROMFS partition is `romfs.img` in that directory (`ringtail device flash` writes it).
MicroPython >= 1.25 boards mount their partition at /rom at boot and run the modules in
place from flash; the unix port cannot map a file, so a process whose directory holds
romfs.img reads it into its heap first, mounts it (`vfs.VfsRom`) at /rom, puts /rom and
/rom/lib on sys.path after '' and '.frozen' as those boards do, and then allocates a pad
until `gc.mem_free()` is exactly that of a fresh `micropython -X heapsize=HEAP`
(`rom_free`, measured at `start()`): the firmware gets a board's data heap, with the
bytecode outside it. Such a process is started with `-X heapsize=` that free heap + the
image + 16 KiB for the shim and the GC's tables (ringtail.device.romfs.heapsize), computed
at each power-on or reset from the image there then. Without romfs.img, the heap is HEAP
and everything, bytecode included, is in it.

How it is wired (each piece was needed; see docs/hwtests.md):

    mpremote ── /dev/pts/B ══ relay thread ══ pty A ── micropython -i -c <boot shim>

- Two pseudo-terminals and a relay thread in this process, not one pty: the unix port
  learns about Ctrl-C only as SIGINT from its terminal's line discipline, so the board side
  must be a real terminal slave (pty A, the process's controlling terminal) with ISIG set
  and everything else raw (no CR/LF translation, no echo). The port's REPL turns ISIG off
  while it reads a line and back on while code runs, so `\\x03` from mpremote interrupts a
  running main.py (KeyboardInterrupt) and is a plain character at the prompt, as on a board.
  The host side (pty B) is fully raw too; pyserial sets it so again when it opens it.
- The boot shim plays the board's boot: remount `/`, mount romfs.img at /rom and pad the
  heap (above) if there is one, run boot.py and main.py if present,
  catch KeyboardInterrupt, then the REPL (`-i`). It prints markers the relay follows to gate
  the host's input: nothing while the process starts (before the port's SIGINT handler
  exists, a Ctrl-C would kill it); only a Ctrl-C while boot.py / main.py run (the REPL's
  start flushes its terminal's input, so the rest waits for the prompt); everything at the
  REPL. Input that arrives while a process dies waits for the next one.
- Reset = a new process in the same directory. `power_cycle()` kills it (SIGKILL); a
  process that ends by itself (Ctrl-D at the friendly prompt, `machine.soft_reset()`,
  `sys.exit()`, in main.py too, a crash) is a reset and is restarted (a crash loop stops
  after 5 in 10 s). A Ctrl-D at the raw REPL's empty prompt is mpremote's soft reset: the
  relay answers `soft reboot` and brings the new process up in the raw REPL without running
  main.py, as MicroPython's board ports do, so mpremote works with or without `resume`.
  Any other exit runs main.py again: `sys.exit(82)` is ringtail.device.flash's hard reset.
- With nobody on the port, the board's output is dropped, like a USB CDC port with no host.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from collections import deque
from pathlib import Path
from types import TracebackType

from ringtail.device import romfs
from ringtail.device.tools import tool

FLASH_IMAGE = "ringtail-flash.img"  # firmware/hal_unix.py FLASH_PATH
ROMFS_IMAGE = romfs.VIRTUAL_IMAGE  # the board's ROMFS partition: "romfs.img"
HEAP = "64wK"  # 64 KB on a 32-bit board: MicroPython scales "w" sizes by pointer size

_MARK_BOOT = b"ringtail-vb: boot"
_MARK_REPL = b"ringtail-vb: repl"
_MARK_REBOOT = b"ringtail-vb: reboot"  # sys.exit() in boot.py / main.py
_MARK_DOWN = b"ringtail-vb: down"  # the process is ending (sys.atexit)
_PROMPT = b">>> "
_RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"

# MicroPython source, run with `-i -c`: the board's boot sequence. __SKIP__ is True after a
# raw-REPL soft reset (boards do not run main.py then); __ROM__ mounts the board's ROMFS
# image (romfs.img) at /rom and leaves the free heap of a board (ringtail.device.romfs), or
# is empty when the board has no image.
_SHIM = """\
import os, sys
def _rt_run(n):
    try:
        os.stat(n)
    except OSError:
        return
    try:
        with open(n) as f:
            src = f.read()
        exec(compile(src, n, 'exec'), globals())
    except SystemExit:
        print('ringtail-vb: reboot')
        raise
    except BaseException as e:
        sys.print_exception(e)
def _rt_root():
    root = os.getcwd()
    os.umount('/')
    os.mount(os.VfsPosix(root), '/')
    os.chdir('/')
    sys.path[:] = ['', '.frozen', '/lib']
def _rt_boot(skip):
    print('ringtail-vb: boot')
    _rt_run('boot.py')
    if not skip:
        _rt_run('main.py')
sys.atexit(lambda: print('ringtail-vb: down'))
_rt_root()
del _rt_root
__ROM__try:
    _rt_boot(__SKIP__)
except KeyboardInterrupt as e:
    sys.print_exception(e)
del _rt_boot, _rt_run
print('ringtail-vb: repl')
"""

# The ROMFS part of the shim: mount romfs.img as the board's partition (a board boots
# without /rom when its partition holds no valid image), then the pad, last.
_SHIM_ROM = (
    romfs.MOUNT_FN
    + """\
try:
    _rt_rom = _rt_mount(__IMAGE__)
except Exception as e:
    _rt_rom = None
    print('ringtail-vb: ' + __IMAGE__ + ' not mounted:', repr(e))
del _rt_mount
"""
)
_SHIM_ROM_END = """\
if _rt_rom:
    print('ringtail-vb: romfs', len(_rt_rom), 'B at /rom, heap', gc.mem_free(), 'B free')
"""

# Runs in the child before the unix port: make pty A the controlling terminal (the child
# is a session leader: start_new_session), so its line discipline's SIGINT reaches it.
_LAUNCH = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

_CONSOLE_KEEP = 64 * 1024  # bytes of console output kept for diagnostics
_TO_HOST_MAX = 64 * 1024  # output waiting for a slow reader; older bytes are dropped
_TO_BOARD_MAX = 16 * 1024  # input waiting for the board; mpremote then waits (backpressure)
_RESTARTS = 5  # self-restarts allowed within _RESTART_WINDOW s before the board is "crashed"
_RESTART_WINDOW = 10.0


def _write(fd: int, data: bytes | bytearray) -> int:
    """Bytes of `data` written to a non-blocking pty end: 0 when it is full (EAGAIN) or
    its other side is gone (EIO; the relay notices that on its next read)."""
    try:
        return os.write(fd, data)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EIO):
            raise
        return 0


class VirtualBoardError(RuntimeError):
    pass


class _Life:
    """One process of the board: power-on (or reset) to death."""

    def __init__(self, proc: subprocess.Popen[bytes], fd: int, number: int, raw_boot: bool):
        self.proc = proc
        self.fd = fd  # master of pty A
        self.number = number
        self.raw_boot = raw_boot  # enter the raw REPL once the prompt shows
        # starting -> running -> ending -> repl; -> exiting (sys.exit() in main.py);
        # -> down (the process is ending; exit_phase: where it was)
        self.phase = "starting"
        self.exit_phase = ""
        self.raw = False  # the REPL last announced is the raw one
        self.killed = False  # power_cycle() / stop() did it; do not restart
        self.interrupted = False  # a Ctrl-C from the host went to its main.py
        self.tail = b""
        self.booted = threading.Event()
        self.dead = threading.Event()
        self.returncode: int | None = None

    def sendable(self, pending: bytearray) -> bytes:
        """What of the host's pending input may go to the process now. At the REPL: all.
        While boot.py / main.py run: a Ctrl-C only (SIGINT; the rest waits for the prompt,
        or the REPL's start, which flushes its terminal's input, would drop it). Booting,
        and from main.py's end to the prompt: nothing."""
        if self.phase == "repl":
            return bytes(pending)
        if self.phase == "running" and not self.interrupted and 3 in pending:
            return b"\x03"
        return b""


class VirtualBoard:
    """A MicroPython unix port in `directory`, reachable by mpremote at `.port`.

    Use as a context manager or call `start()` and `stop()`. `power_cycle()` kills the
    process and starts another in the same directory; files and the flash image survive.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        heap: str = HEAP,
        micropython: str | None = None,
        log: str | os.PathLike[str] | None = None,
    ):
        self.directory = Path(directory).resolve()
        self.heap = heap
        self._micropython = micropython
        self._log_path = Path(log) if log is not None else None
        self._log: object | None = None
        self.port = ""
        self.boots = 0  # processes started, power-on and resets alike
        self.error: str | None = None  # why the board stopped restarting, if it did
        # gc.mem_free() of a fresh `micropython -X heapsize=HEAP`: what the firmware gets
        # when it runs from a ROMFS image (measured at start())
        self.rom_free: int | None = None
        self.rom_bytes = 0  # the ROMFS image the current process mounted (0: none)
        self._lock = threading.RLock()
        self._life: _Life | None = None
        self._graveyard: list[int] = []  # pty A masters of dead lives, closed by the relay
        self._restarts: deque[float] = deque()
        self._console: deque[bytes] = deque()
        self._console_len = 0
        self._console_dropped = 0  # bytes no longer kept
        self._host_fd = -1  # master of pty B
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        # owned by the relay thread; other threads ask through _drop_input
        self._to_board = bytearray()
        self._to_host = bytearray()
        self._drop_input = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> VirtualBoard:
        """Create the port, power the board on and wait until it has booted."""
        if self._thread is not None:
            raise VirtualBoardError("virtual board already started")
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._micropython is None:
            self._micropython = tool("micropython")
        try:
            self.rom_free = romfs.free_heap(self.heap, self._micropython)
        except (subprocess.SubprocessError, ValueError) as e:
            raise VirtualBoardError(
                f"heap {self.heap!r}: the unix port did not start with it: {e}"
            ) from e
        if self._log_path is not None:
            self._log = open(self._log_path, "ab")  # noqa: SIM115 - lives with the board
        master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        os.close(slave)  # mpremote opens it by name; until then the board's output is dropped
        os.set_blocking(master, False)
        self._host_fd = master
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stopping = False
        with self._lock:
            self._life = self._spawn(raw_boot=False)
        self._thread = threading.Thread(
            target=self._relay, name=f"virtual-board {self.port}", daemon=True
        )
        self._thread.start()
        self.wait_booted(timeout)
        return self

    def stop(self) -> None:
        """Power off for good: kill the process, close the port."""
        if self._thread is None:
            return
        with self._lock:
            self._stopping = True
            self._kill()
        self._wake()
        self._thread.join(timeout=10)
        self._thread = None
        for fd in [*self._graveyard, self._host_fd, self._wake_r, self._wake_w]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._graveyard.clear()
        self._host_fd = self._wake_r = self._wake_w = -1
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def power_cycle(self, timeout: float = 30.0) -> None:
        """Cut the power (SIGKILL: no cleanup runs, writes in progress stop where they are)
        and power on again in the same directory. Waits until the board has booted."""
        if self._thread is None:
            raise VirtualBoardError("virtual board not started")
        with self._lock:
            self._kill()
            self._drop_input = True  # bytes on their way to the dead board are lost
            self._restarts.clear()
            self.error = None
            self._life = self._spawn(raw_boot=False)
        self._wake()
        self.wait_booted(timeout)

    def wait_booted(self, timeout: float = 30.0) -> None:
        """Wait until the current process has started its boot sequence (the shim runs:
        input reaches it from now on). Raises VirtualBoardError with the console's tail if
        it does not, or if it died."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                life = self._life
            if life is None:
                raise VirtualBoardError(f"virtual board is off: {self.error}\n{self._tail()}")
            if life.booted.wait(0.05):
                return
            if time.monotonic() > deadline:
                raise VirtualBoardError(
                    f"virtual board did not boot within {timeout:.0f} s; console:\n" + self._tail()
                )

    @property
    def running(self) -> bool:
        with self._lock:
            return self._life is not None and self._life.returncode is None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._life.proc.pid if self._life is not None else None

    def console(self, since: int = 0) -> bytes:
        """The last 64 KiB the board printed (whether or not anyone was reading); with
        `since` (a console_mark()), only what it printed after that mark."""
        with self._lock:
            text = b"".join(self._console)
            return text[max(0, since - self._console_dropped) :] if since else text

    def console_mark(self) -> int:
        """How many bytes the board has printed so far: a mark for console(since=...)."""
        with self._lock:
            return self._console_dropped + self._console_len

    def _tail(self, n: int = 2000) -> str:
        return self.console()[-n:].decode("utf-8", "replace")

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"VirtualBoard({str(self.directory)!r}, port={self.port!r}, boots={self.boots})"

    # -- processes (called with the lock held) -------------------------------------------------

    def _spawn(self, raw_boot: bool) -> _Life:
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] |= termios.ISIG  # lflag: Ctrl-C -> SIGINT while code runs
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        assert self._micropython is not None
        heap, shim = self._boot(raw_boot)
        cmd = [sys.executable, "-c", _LAUNCH, self._micropython, "-X", f"heapsize={heap}"]
        cmd += ["-i", "-c", shim]
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self.directory,
                start_new_session=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.boots += 1
        return _Life(proc, master, self.boots, raw_boot)

    def _boot(self, raw_boot: bool) -> tuple[str, str]:
        """The heap size and the boot shim of the next process: with a ROMFS image in the
        directory, a heap of the image + the free heap a board of `heap` has + slack, and a
        shim that mounts the image and pads the heap down to that free heap; else `heap`."""
        shim = _SHIM.replace("__SKIP__", repr(raw_boot))
        image = self.directory / ROMFS_IMAGE
        try:
            size = image.stat().st_size if image.is_file() else -1
        except OSError:
            size = -1
        if size < 0 or self.rom_free is None:
            self.rom_bytes = 0
            return self.heap, shim.replace("__ROM__", "")
        self.rom_bytes = size
        rom = _SHIM_ROM.replace("__IMAGE__", repr(ROMFS_IMAGE))
        rom += romfs.pad_source(self.rom_free) + _SHIM_ROM_END
        return str(romfs.heapsize(size, self.rom_free)), shim.replace("__ROM__", rom)

    def _kill(self) -> None:
        life = self._life
        if life is None:
            return
        life.killed = True
        if life.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(life.proc.pid, signal.SIGKILL)
        life.returncode = life.proc.wait()
        life.dead.set()
        self._graveyard.append(life.fd)
        self._life = None

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- the relay thread ------------------------------------------------------------------------

    def _relay(self) -> None:
        try:
            self._relay_loop()
        except Exception as e:  # pragma: no cover - a bug here must not pass silently
            with self._lock:
                self.error = f"relay failed: {e!r}"
                self._kill()

    def _relay_loop(self) -> None:
        host = self._host_fd
        probe = select.poll()
        probe.register(host, select.POLLIN)
        while True:
            with self._lock:
                if self._stopping:
                    return
                for fd in self._graveyard:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._graveyard.clear()
                if self._drop_input:
                    self._drop_input = False
                    self._to_board.clear()
                life = self._life
            life_fd = life.fd if life is not None else -1
            # Is anyone on the port? A pty master reports POLLHUP while no one has the slave
            # open; then the board's output goes nowhere, as with a USB port and no host.
            connected = not any(ev & select.POLLHUP for _, ev in probe.poll(0))
            if not connected:
                self._to_host.clear()
            p = select.poll()
            p.register(self._wake_r, select.POLLIN)
            if connected:
                ev = select.POLLOUT if self._to_host else 0
                if len(self._to_board) < _TO_BOARD_MAX:
                    ev |= select.POLLIN
                if ev:
                    p.register(host, ev)
            if life is not None:
                ev = select.POLLIN
                if life.sendable(self._to_board):
                    ev |= select.POLLOUT
                p.register(life.fd, ev)
            # the board's output first: it may close the gate to what the host sent
            events = sorted(p.poll(100 if connected else 50), key=lambda e: e[0] != life_fd)
            for fd, ev in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 64)
                elif fd == host:
                    self._host_io(ev)
                elif life is not None and fd == life.fd:
                    self._board_io(life, ev, connected)

    def _host_io(self, ev: int) -> None:
        host = self._host_fd
        if ev & select.POLLIN:
            try:
                data = os.read(host, 4096)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EIO):
                    raise
                data = b""
            self._to_board += data
        if ev & select.POLLOUT and self._to_host:
            del self._to_host[: _write(host, self._to_host)]

    def _board_io(self, life: _Life, ev: int, connected: bool) -> None:
        # output first: it may say that the process is going (then input waits)
        if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                data = os.read(life.fd, 4096)
            except BlockingIOError:
                data = None
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""
            if data == b"":  # every slave closed: the process is gone
                self._died(life)
                return
            if data:
                self._output(life, data, connected)
                if life.phase == "exiting":
                    self._reboot(life)
                    return
        out = life.sendable(self._to_board) if ev & select.POLLOUT else b""
        if out == b"\x03" and life.phase == "running":
            if _write(life.fd, out):
                life.interrupted = True
                del self._to_board[self._to_board.index(3)]
        elif out:
            del self._to_board[: _write(life.fd, out)]

    def _output(self, life: _Life, data: bytes, connected: bool) -> None:
        if connected:
            self._to_host += data
            if len(self._to_host) > _TO_HOST_MAX:
                del self._to_host[: len(self._to_host) - _TO_HOST_MAX]
        with self._lock:
            self._console.append(data)
            self._console_len += len(data)
            while self._console_len - len(self._console[0]) >= _CONSOLE_KEEP:
                n = len(self._console.popleft())
                self._console_len -= n
                self._console_dropped += n
        if self._log is not None:
            self._log.write(data)  # type: ignore[attr-defined]
            self._log.flush()  # type: ignore[attr-defined]
        window = life.tail + data
        life.tail = window[-64:]
        self._track(life, window)

    def _track(self, life: _Life, window: bytes) -> None:
        """Follow the board's state from what it prints, to gate input and emulate resets.
        `window` is the new output with the end of the previous one in front."""
        down = window.find(_MARK_DOWN)
        if down < 0 or life.phase in ("exiting", "down"):
            self._track_boot(life, window)
            return
        self._track_boot(life, window[:down])
        if life.phase != "exiting":
            # Ending (sys.atexit runs before the interpreter goes): from now on the host's
            # input is for the next process, even if this one takes a while to go.
            life.exit_phase = life.phase
            life.phase = "down"

    def _track_boot(self, life: _Life, window: bytes) -> None:
        if life.phase == "starting" and _MARK_BOOT in window:
            life.phase = "running"
            life.booted.set()
            window = window[window.index(_MARK_BOOT) :]
        if life.phase == "running" and _MARK_REBOOT in window:
            life.phase = "exiting"  # _board_io reboots it
            return
        if life.phase == "running" and _MARK_REPL in window:
            life.phase = "ending"
            window = window[window.index(_MARK_REPL) :]
        elif life.phase == "running" and life.interrupted and _PROMPT in window:
            life.phase = "ending"  # the Ctrl-C hit the shim's last line: no marker
        if life.phase == "ending" and _PROMPT in window:
            # The REPL reads its line with ISIG off: Ctrl-C is a character from here on.
            life.phase = "repl"
            if life.raw_boot:
                life.raw_boot = False
                self._to_board[:0] = b"\r\x01"  # back into the raw REPL, as boards do
        if life.phase == "repl":
            raw_at = window.rfind(_RAW_BANNER)
            prompt_at = window.rfind(_PROMPT)
            if raw_at > prompt_at:
                life.raw = True
            elif prompt_at > raw_at:
                life.raw = False

    def _reboot(self, life: _Life) -> None:
        """sys.exit() in boot.py or main.py: a board soft-reboots (and runs main.py again).
        The unix port would go on to the REPL (-i), so the process is ended here."""
        with self._lock:
            if life.killed or life is not self._life:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(life.proc.pid, signal.SIGKILL)
            self._restart(life)

    def _died(self, life: _Life) -> None:
        with self._lock:
            if life.killed or life is not self._life:
                return
            self._restart(life)

    def _restart(self, life: _Life) -> None:
        """The process of `life` has ended by itself: a reset; start the next one."""
        if life.phase == "down":
            life.phase = life.exit_phase
        with self._lock:
            life.returncode = life.proc.wait()
            life.dead.set()
            self._graveyard.append(life.fd)
            self._life = None
            if self._stopping:
                return
            if life.phase != "repl":
                # Died booting or in main.py (a crash, sys.exit()): a board would reset and
                # try again, and so do we, but not forever. Exits at the REPL are resets
                # someone asked for (Ctrl-D, machine.soft_reset(), sys.exit() over mpremote).
                now = time.monotonic()
                while self._restarts and now - self._restarts[0] > _RESTART_WINDOW:
                    self._restarts.popleft()
                if len(self._restarts) >= _RESTARTS:
                    self.error = (
                        f"reset itself {_RESTARTS} times within {_RESTART_WINDOW:.0f} s while "
                        f"booting or running main.py (last exit status {life.returncode}); "
                        "power_cycle() to try again"
                    )
                    return
                self._restarts.append(now)
            # A soft reset. Ctrl-D at the raw REPL's empty prompt is mpremote's: answer as a
            # board does and come back up in the raw REPL without running main.py.
            raw = life.returncode == 0 and life.raw and life.phase == "repl"
            # What the host sent after the death waits for the next process. A Ctrl-C that
            # died with this one is owed to the next (it is already running main.py).
            if life.interrupted and life.phase != "repl":
                self._to_board[:0] = b"\x03"
            if raw:
                self._to_host += b"soft reboot\r\n"
            self._life = self._spawn(raw_boot=raw)
