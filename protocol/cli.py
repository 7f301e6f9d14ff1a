"""`ringtail protocol check`: validate payload files exactly as the gateway does."""

from __future__ import annotations

import sys
from pathlib import Path

from protocol.batch import parse_batch
from protocol.errors import ProtocolError
from protocol.health import parse_health


def check_files(paths: list[str], *, health: bool = False) -> int:
    """Print one line per file: the CoAP code the gateway would answer and why.
    Returns 0 when every file is valid, 1 when any is refused or unreadable."""
    failed = 0
    for name in paths:
        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as e:
            print(f"{name}: cannot read: {e.strerror}", file=sys.stderr)
            failed += 1
            continue
        try:
            if health:
                report = parse_health(data)
                summary = f"health report of {report.device}, boot {report.boot}"
            else:
                b = parse_batch(data)
                summary = (
                    f"{b.readings} readings in {len(b.series)} series, "
                    f"seq {b.seq}..{b.last_seq} (device {b.device}, boot {b.boot})"
                )
        except ProtocolError as e:
            print(f"{name}: {e}")
            failed += 1
            continue
        print(f"{name}: 2.04 valid: {summary}")
    return 1 if failed else 0
