"""The `ringtail` command: one entry point for every part of the system.

Each part registers its subcommands here as it arrives; a subcommand's module is imported
only when that subcommand runs, so `ringtail --help` works on a box that installed only
one side's extra (a gateway does not have chDB, a cloud image has no MicroPython).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def _gateway_commands(sub: argparse._SubParsersAction) -> None:
    try:
        from gateway.cli import add_commands
    except ImportError as e:  # a box without the gateway extra
        sub.add_parser(
            "gateway",
            help=f"unavailable: {e.name} is not installed (pip install 'ringtail[gateway]')",
        )
        return
    add_commands(sub)


def _cloud_commands(sub: argparse._SubParsersAction) -> None:
    try:
        from cloud.cli import add_commands
    except ImportError as e:  # a box without the cloud extra
        sub.add_parser(
            "cloud",
            help=f"unavailable: {e.name} is not installed (pip install 'ringtail[cloud]')",
        )
        return
    add_commands(sub)


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
    _gateway_commands(sub)
    _cloud_commands(sub)
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
