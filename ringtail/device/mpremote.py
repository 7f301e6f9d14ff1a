"""Run the real `mpremote` against a board's serial port (a USB board or a virtual one).

Every call is one mpremote process: `mpremote connect PORT [resume] ARGS...`. With
`resume`, mpremote does not soft-reset the board first; it still interrupts a running
program with Ctrl-C to get the raw REPL. Without it, it soft-resets (a clean interpreter,
main.py not run). Both work on real boards and on ringtail.device.virtual's boards.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Callable, Sequence

from ringtail.device.tools import tool


class MpremoteError(RuntimeError):
    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


def _describe(args: Sequence[str]) -> str:
    text = " ".join(a if len(a) <= 40 and "\n" not in a else a[:37] + "..." for a in args)
    return text if len(text) <= 120 else text[:117] + "..."


def run(
    port: str,
    *args: str,
    resume: bool = True,
    timeout: float = 120.0,
    on_line: Callable[[str], None] | None = None,
) -> str:
    """Run `mpremote connect PORT [resume] ARGS...`; return its output (standard output and
    error, CR LF as LF). `on_line` sees each output line as it comes (progress). Raises
    MpremoteError with the output when mpremote fails or takes longer than `timeout`."""
    cmd = [tool("mpremote"), "connect", port]
    if resume:
        cmd.append("resume")
    cmd += args
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # lines as they come, for progress
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        rc, lines, timed_out = _collect(proc, timeout, on_line)
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C, a test's timeout): leave nothing behind
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    output = "\n".join(lines)
    what = f"mpremote connect {port}{' resume' if resume else ''} {_describe(args)}"
    if timed_out:
        raise MpremoteError(f"{what}: no answer within {timeout:.0f} s\n{output}", output)
    if rc != 0:
        raise MpremoteError(f"{what}: failed (exit status {rc})\n{output}", output)
    return output


def _collect(
    proc: subprocess.Popen[bytes], timeout: float, on_line: Callable[[str], None] | None
) -> tuple[int, list[str], bool]:
    """Read the process's output by lines until it ends or `timeout` passes (then kill it).
    mpremote waits forever on a pseudo-terminal that does not answer, hence the timeout."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        pending = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                proc.kill()
                break
            if not sel.select(min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            *done, pending = pending.split(b"\n")
            for raw in done:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                lines.append(line)
                if on_line is not None:
                    on_line(line)
        if pending:
            lines.append(pending.decode("utf-8", "replace").rstrip("\r"))
    return proc.wait(), lines, timed_out


def exec_(port: str, code: str, *, resume: bool = True, timeout: float = 120.0) -> str:
    """Run Python `code` on the board; return what it printed. A device-side exception
    raises MpremoteError carrying the traceback."""
    return run(port, "exec", code, resume=resume, timeout=timeout)
