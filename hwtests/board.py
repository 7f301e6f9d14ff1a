"""The board under test: a virtual board (the MicroPython unix port behind a pty) or a real
ESP32 / RP2040 on a serial port. Tests talk to both the same way, through the real mpremote.

A board declares the features it has; a test that needs one it lacks is skipped, saying
which board it needs (`@pytest.mark.needs("power-cut")`; FEATURES lists them).
"""

from __future__ import annotations

import ast
import os
import re
import time
from pathlib import Path
from typing import Any

from ringtail.device import flash, mpremote
from ringtail.device.virtual import VirtualBoard

# feature -> what it means, and which board has it (the skip reason)
FEATURES = {
    "virtual": "tests of the virtual board's own machinery (ringtail.device.virtual)",
    "power-cut": "cutting power mid-write (SIGKILL): the virtual board only; a real board "
    "would need a switchable USB hub",
    "host-files": "the board's filesystem as a host directory: the virtual board only",
    "console": "the board's console output since power-on (what main.py printed, its "
    "tracebacks): the virtual board only; a real board's USB port shows it only to whoever "
    "has it open",
    "unique-id": "machine.unique_id(): a real board only (the unix port has none)",
    "hard-reset": "machine.reset() and USB re-enumeration: a real board only",
}

READY_TIMEOUT = 60.0  # a board back from a reset answers mpremote within this

# Runs on the board: the board's HAL, its flash ring (opening it takes a new boot number),
# and hw_print_records() to list the ring.
RING_OPEN = """\
import sys
hal = __import__({'esp32': 'hal_esp32', 'rp2': 'hal_rp2'}.get(sys.platform, 'hal_unix'))
import store
r = store.open_store(hal.flash())
def hw_print_records():
    r.rewind()
    b = bytearray(r.paymax)
    while True:
        n = r.read(b)
        if n < 0:
            return
        print(repr((r.rb, r.rs, bytes(b[:n]))))
"""


def ring_records(out: str) -> list[tuple[int, int, bytes]]:
    """What hw_print_records() printed: (boot, seq, payload), oldest first."""
    return [ast.literal_eval(line) for line in out.splitlines() if line.startswith("(")]


class Board:
    """What every board offers the tests."""

    kind = "board"
    features: frozenset[str] = frozenset()

    def __init__(self, port: str):
        self.port = port
        self.log: list[str] = []  # what deploy() said, for failure reports

    def mpremote(self, *args: str, resume: bool = True, timeout: float = 120.0) -> str:
        """`mpremote connect PORT [resume] ARGS...`; its output."""
        return mpremote.run(self.port, *args, resume=resume, timeout=timeout)

    def exec(self, code: str, timeout: float = 120.0) -> str:
        """Run `code` on the board; what it printed, stripped."""
        return mpremote.exec_(self.port, code, timeout=timeout).strip()

    def eval(self, expr: str) -> Any:
        """The value of a Python expression on the board (whose repr CPython can read)."""
        import ast

        return ast.literal_eval(self.exec(f"print(repr({expr}))"))

    def deploy(self, **kwargs: Any) -> flash.FlashResult:
        """`ringtail device flash` on this board (keyword arguments of flash.flash)."""
        kwargs.setdefault("say", self.log.append)
        return flash.flash(self.port, **kwargs)

    def power_cycle(self) -> None:
        raise NotImplementedError

    def console(self) -> str:
        """What the board printed, as far as the rig could see it."""
        return ""

    def close(self) -> None:
        pass

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the board answers mpremote (after a reset)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.exec("print('ready')", timeout=10) == "ready":
                    return
            except mpremote.MpremoteError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def remove(self, *names: str) -> None:
        """Delete files on the board if present."""
        self.exec(
            f"import os\nfor n in {list(names)!r}:\n    try:\n        os.remove(n)\n"
            "    except OSError:\n        pass"
        )


class VirtualTestBoard(Board):
    kind = "virtual"
    features = frozenset({"virtual", "power-cut", "host-files", "console"})

    def __init__(self, directory: Path, heap: str | None = None):
        kwargs = {"heap": heap} if heap else {}
        self.vb = VirtualBoard(directory, **kwargs)
        self.vb.start()
        super().__init__(self.vb.port)

    @property
    def directory(self) -> Path:
        return self.vb.directory

    @property
    def boots(self) -> int:
        return self.vb.boots

    def power_cycle(self) -> None:
        self.vb.power_cycle()

    def wait_boots(self, n: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the board has started its n-th process (a reset it did itself)."""
        deadline = time.monotonic() + timeout
        while self.vb.boots < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"board did not reset: boots {self.vb.boots} < {n}")
            time.sleep(0.05)
        self.vb.wait_booted(timeout)

    def close(self) -> None:
        self.vb.stop()

    def console(self, since: int = 0) -> str:
        """The console (after `since`, a console_mark())."""
        return self.vb.console(since).decode("utf-8", "replace")

    def console_mark(self) -> int:
        return self.vb.console_mark()

    def wait_console(
        self, pattern: str, since: int = 0, timeout: float = READY_TIMEOUT
    ) -> re.Match[str]:
        """Wait until what the board printed after `since` (a console_mark()) matches the
        regular expression `pattern`; the match."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.console(since))
            if m:
                return m
            if time.monotonic() > deadline:
                tail = self.console(since)[-3000:]
                raise AssertionError(f"no {pattern!r} on the console in {timeout:.0f} s:\n{tail}")
            time.sleep(0.05)


class SerialBoard(Board):
    """A real board on a USB serial port, running MicroPython."""

    kind = "real"
    features = frozenset({"unique-id", "hard-reset"})

    def __init__(self, port: str, gateway: tuple[str, int] | None = None):
        super().__init__(port)
        self.gateway = gateway  # written by every deploy unless a test gives its own

    def deploy(self, **kwargs: Any) -> flash.FlashResult:
        if kwargs.get("gateway") is None:
            kwargs["gateway"] = self.gateway
        return super().deploy(**kwargs)

    def power_cycle(self) -> None:
        """A hard reset (machine.reset): RAM is lost, flash and files are kept. It is not a
        power cut mid-write (see FEATURES["power-cut"])."""
        self.mpremote(
            "exec", "--no-follow", "import time, machine; time.sleep_ms(100); machine.reset()"
        )
        time.sleep(1.0)  # the USB device goes away, then comes back
        deadline = time.monotonic() + READY_TIMEOUT
        while not os.path.exists(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.wait_ready(max(1.0, deadline - time.monotonic()))
