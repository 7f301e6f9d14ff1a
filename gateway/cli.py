"""`ringtail gateway ...`: run the gateway, or check its configuration."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.config import ConfigError, load_config
from ringtail.logs import add_log_level, setup_logging


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gateway",
        help="the CoAP gateway: devices in, JetStream out",
        description="The gateway: accepts device batches over CoAP, makes them durable in a "
        "disk spool, acknowledges, and publishes them to NATS JetStream.",
    )
    gsub = p.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    run = gsub.add_parser(
        "run",
        help="run the gateway until SIGTERM",
        description="Run the gateway. Without --config: CoAP on udp/5683 of all local "
        "addresses, NATS at nats://127.0.0.1:4222, spool under ./var/gateway, metrics on "
        "http://127.0.0.1:9464/metrics. SIGTERM or Ctrl-C drains and stops.",
    )
    run.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    add_log_level(run)
    run.set_defaults(run=_run)
    check = gsub.add_parser(
        "check-config",
        help="validate a configuration file and print the settings in effect",
        description="Validate FILE and print every setting in effect, defaults included.",
    )
    check.add_argument("config", type=Path, metavar="FILE")
    check.set_defaults(run=_check)


def _run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"ringtail gateway: {e}", file=sys.stderr)
        return 2
    from gateway.service import run

    return asyncio.run(run(config))


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"ringtail gateway: {e}", file=sys.stderr)
        return 2
    print(f"{args.config}: valid")
    print(f"gateway.id = {config.id!r}")
    print(f"gateway.drain_timeout_s = {config.drain_timeout_s}")
    for section in ("coap", "spool", "nats", "metrics"):
        values = getattr(config, section)
        for name in values.__dataclass_fields__:
            value = getattr(values, name)
            print(f"{section}.{name} = {str(value) if isinstance(value, Path) else repr(value)}")
    return 0
