"""The `ringtail` command: one entry point for every part of the system.

Each part registers its subcommands here as it arrives; a subcommand's module is imported
only when that subcommand runs, so `ringtail --help` works on a box that installed only
one side's extra (a gateway does not have chDB, a cloud image has no MicroPython).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from ringtail import __version__

_DESCRIPTION = """\
Ringtail moves sensor readings from MicroPython boards through a CoAP gateway and
NATS JetStream into ClickHouse, exactly once, over links that fail.
"""

_EPILOG = """\
examples:
  ringtail protocol check batch.cbor     validate a telemetry batch as the gateway would
  ringtail protocol check --health h.cbor   validate a health report
  ringtail protocol schema               print the wire contract (CDDL)
  ringtail gateway run --config gw.toml  run a gateway
  ringtail device flash /dev/ttyACM0   compile, deploy and verify the firmware on a board

Run `ringtail COMMAND --help` for the options of one command.
"""


def _protocol_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "protocol",
        help="the wire contract: validate batches, print the schema",
        description="The device-to-gateway wire contract (protocol/telemetry.cddl).",
    )
    psub = p.add_subparsers(dest="protocol_command", metavar="ACTION", required=True)

    check = psub.add_parser(
        "check",
        help="validate CBOR telemetry batches; print the CoAP code the gateway would answer",
        description=(
            "Validate each FILE (a CBOR telemetry batch; '-' reads standard input) as the "
            "gateway does. Prints one line per file: the CoAP response code and, for a "
            "rejected batch, the reason. Exits 0 if every file is valid, 1 otherwise."
        ),
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument(
        "--health", action="store_true", help="the files are health reports, not batches"
    )
    check.set_defaults(run=_run_protocol_check)

    schema = psub.add_parser(
        "schema",
        help="print protocol/telemetry.cddl",
        description="Print the CDDL (RFC 8610) schema of the wire contract.",
    )
    schema.set_defaults(run=_run_protocol_schema)


def _run_protocol_check(args: argparse.Namespace) -> int:
    from protocol.cli import check_files

    return check_files(args.files, health=args.health)


def _run_protocol_schema(args: argparse.Namespace) -> int:
    from protocol import schema_text

    sys.stdout.write(schema_text())
    return 0


def _extra_commands(
    sub: argparse._SubParsersAction, name: str, module: str, adder: str, extra: str
) -> None:
    """The `name` command from `module`.`adder`(sub), or, on a box without the `extra`
    (its imports fail), a `name` whose help says what to install."""
    try:
        add = getattr(importlib.import_module(module), adder)
    except ImportError as e:
        sub.add_parser(
            name,
            help=f"unavailable: {e.name} is not installed (pip install 'ringtail[{extra}]')",
        )
        return
    add(sub)


def _device_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "device",
        help="boards: flash the firmware, check it, run a virtual board",
        description="Boards running Ringtail's MicroPython firmware, over their USB serial "
        "port (mpremote), or a virtual board (the MicroPython unix port behind a "
        "pseudo-terminal). See docs/hwtests.md.",
    )
    dsub = p.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    fl = dsub.add_parser(
        "flash",
        help="compile the firmware, deploy it, write config.json, verify, reset",
        description="Compile firmware/*.py with mpy-cross (main.py stays source) into a "
        "ROMFS image and deploy it with mpremote: into the board's ROMFS partition "
        "(MicroPython >= 1.25; the modules run from flash at /rom), as romfs.img on a virtual "
        "board, else (or with --files) as .mpy files; main.py, config.json (device id and "
        "gateway; other keys already on the board are kept) and manifest.json go into the "
        "filesystem, a line per step. Then check every hash on the board against what was "
        "built, and reset the board so that it runs the new firmware. PORT is a serial port "
        "(/dev/ttyACM0, COM3, a virtual board's /dev/pts/N) or 'auto' (the default: "
        "mpremote's first USB serial board).",
    )
    fl.add_argument("port", nargs="?", default="auto", metavar="PORT")
    fl.add_argument(
        "--device-id",
        metavar="ID",
        help="the device's id (default: the one in the board's config.json, else "
        "'ringtail-' + the chip's unique id)",
    )
    fl.add_argument(
        "--gateway",
        metavar="HOST[:PORT]",
        help="the gateway as the board reaches it (default: the board's config.json; a "
        "virtual board: 127.0.0.1:5683)",
    )
    fl.add_argument(
        "--firmware", type=Path, metavar="DIR", help="firmware sources (default: firmware/)"
    )
    fl.add_argument(
        "--full", action="store_true", help="copy every file, even those already on the board"
    )
    fl.add_argument("--no-reset", action="store_true", help="do not reset the board afterwards")
    fl.add_argument(
        "--files",
        action="store_true",
        help="deploy every module as a .mpy file in the board's filesystem, not as a ROMFS "
        "image (the default where the board can mount one: a ROMFS partition, or a virtual "
        "board); the board then loads the bytecode into its heap",
    )
    fl.set_defaults(run=_run_device_flash)
    ve = dsub.add_parser(
        "verify",
        help="check the board's files against the manifest of its last flash",
        description="Hash every file listed in the board's manifest.json (written by "
        "`ringtail device flash`) on the board and compare. Exits 1 on any difference.",
    )
    ve.add_argument("port", nargs="?", default="auto", metavar="PORT")
    ve.set_defaults(run=_run_device_verify)
    vi = dsub.add_parser(
        "virtual",
        help="run a virtual board in the foreground; print its serial port",
        description="Run the MicroPython unix port as a board whose filesystem is DIR "
        "(created if missing; its NOR flash is DIR/ringtail-flash.img) until Ctrl-C or "
        "SIGTERM. Prints the port (a /dev/pts path) on standard output: use it with "
        "mpremote or `ringtail device flash PORT`.",
    )
    vi.add_argument("directory", type=Path, metavar="DIR")
    vi.add_argument(
        "--heap",
        default="64wK",
        help="the board's MicroPython heap (default 64wK: 64 KiB on a 32-bit board; with a "
        "ROMFS image, the free heap the firmware gets besides it)",
    )
    vi.add_argument("--log", type=Path, metavar="FILE", help="append the console output here")
    vi.set_defaults(run=_run_device_virtual)


def _run_device_flash(args: argparse.Namespace) -> int:
    from ringtail.device.cli import flash

    return flash(args)


def _run_device_verify(args: argparse.Namespace) -> int:
    from ringtail.device.cli import verify

    return verify(args)


def _run_device_virtual(args: argparse.Namespace) -> int:
    from ringtail.device.cli import virtual

    return virtual(args)


def _stack_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stack",
        help="the whole pipeline on this machine: NATS, cloud, gateway, virtual boards",
        description="Start nats-server (JetStream), the cloud (writer + API on chDB), the "
        "gateway and N virtual boards running the real firmware (flashed with mpremote) "
        "with simulated SHT3x sensors; print where to look; run until Ctrl-C (or "
        "--duration), then stop everything cleanly. All state lives under --var, so the "
        "next run resumes with the data kept. `just run` is this command.",
    )
    p.add_argument("--devices", type=int, default=3, metavar="N", help="virtual boards (3)")
    p.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (for scripts and CI)"
    )
    p.add_argument("--var", type=Path, default=Path("var"), help="state directory (./var)")
    p.add_argument("--coap-port", type=int, default=5683, metavar="PORT", help="(5683)")
    p.add_argument("--nats-port", type=int, default=4222, metavar="PORT", help="(4222)")
    p.add_argument("--api-port", type=int, default=8000, metavar="PORT", help="(8000)")
    p.add_argument(
        "--batch-s", type=int, default=10, metavar="S", help="the boards' batch window (10)"
    )
    p.set_defaults(run=_run_stack)


def _run_stack(args: argparse.Namespace) -> int:
    if args.devices < 0 or (args.duration is not None and args.duration <= 0):
        print("ringtail stack: --devices must be >= 0 and --duration > 0", file=sys.stderr)
        return 2
    from ringtail.stack import run_command

    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ringtail",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ringtail {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _protocol_commands(sub)
    _extra_commands(sub, "gateway", "gateway.cli", "add_commands", "gateway")
    _extra_commands(sub, "cloud", "cloud.cli", "add_commands", "cloud")
    _device_commands(sub)
    _extra_commands(sub, "audit", "cloud.cli", "add_audit_command", "cloud")
    _stack_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
