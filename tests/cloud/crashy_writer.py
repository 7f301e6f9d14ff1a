"""`ringtail cloud writer` that SIGKILLs itself right after an insert returned and before
any ack, with probability $RINGTAIL_TEST_KILL_AFTER_INSERT per insert: the one cut that
random timing rarely hits (the window is microseconds wide). Fault injection for
test_crash.py; NATS and ClickHouse stay real."""

from __future__ import annotations

import os
import random
import signal
import sys
from typing import Any

from cloud import writer
from ringtail.cli import main

_insert = writer.Writer._insert
_P = float(os.environ.get("RINGTAIL_TEST_KILL_AFTER_INSERT", "0"))


async def _insert_then_maybe_die(self: writer.Writer, *args: Any) -> bool:
    ok = await _insert(self, *args)
    if ok and random.random() < _P:
        print("test: SIGKILL after insert, before ack", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return ok


writer.Writer._insert = _insert_then_maybe_die  # type: ignore[method-assign, assignment]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
