"""`ringtail device ...`: the subcommands' bodies (the parser is in ringtail/cli.py)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ringtail.device.mpremote import MpremoteError
from ringtail.device.tools import FIRMWARE, ToolError


def _fail(message: str) -> int:
    print(f"ringtail device: {message}", file=sys.stderr)
    return 1


def _say(line: str) -> None:
    print(line, flush=True)


def flash(args: argparse.Namespace) -> int:
    from ringtail.device import flash as fl

    try:
        gateway = fl.parse_gateway(args.gateway) if args.gateway else None
        fl.flash(
            args.port,
            firmware=args.firmware or FIRMWARE,
            device=args.device_id,
            gateway=gateway,
            do_reset=not args.no_reset,
            full=args.full,
            files=getattr(args, "files", False),
            say=_say,
        )
    except (fl.FlashError, MpremoteError, ToolError) as e:
        return _fail(str(e))
    return 0


def verify(args: argparse.Namespace) -> int:
    from ringtail.device import flash as fl

    try:
        fl.verify_manifest(args.port, say=_say)
    except (fl.FlashError, MpremoteError, ToolError) as e:
        return _fail(str(e))
    return 0


def virtual(args: argparse.Namespace) -> int:
    from ringtail.device.virtual import VirtualBoard, VirtualBoardError

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    board = VirtualBoard(args.directory, heap=args.heap, log=args.log)
    try:
        board.start()
    except (VirtualBoardError, ToolError) as e:
        board.stop()
        return _fail(str(e))
    try:
        print(board.port, flush=True)
        print(
            f"virtual board: filesystem {board.directory}, serial port {board.port}\n"
            f"  mpremote connect {board.port} resume repl\n"
            f"  ringtail device flash {board.port} --device-id ID\n"
            "Ctrl-C or SIGTERM powers it off.",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(1.0):
            if not board.running and board.error is not None:
                return _fail(f"the virtual board stopped: {board.error}")
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0
