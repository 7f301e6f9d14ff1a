"""`ringtail cloud ...`: run the JetStream → ClickHouse writer."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cloud",
        help="the cloud side: the JetStream → ClickHouse writer",
        description="The cloud side of Ringtail.",
    )
    csub = p.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)
    w = csub.add_parser(
        "writer",
        help="run the TELEMETRY → ClickHouse writer until SIGTERM",
        description="Run the writer. Without --config: NATS at nats://127.0.0.1:4222, chDB "
        "data under ./var/clickhouse. NATS_URL, CLICKHOUSE_URL (a server through "
        "clickhouse-connect) and RINGTAIL_CHDB_PATH override the file. SIGTERM or Ctrl-C "
        "finishes the fetch in hand and stops.",
    )
    w.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    w.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    w.set_defaults(run=_run_writer)


def _run_writer(args: argparse.Namespace) -> int:
    from cloud.config import ConfigError, load_config

    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"ringtail cloud: {e}", file=sys.stderr)
        return 2
    from cloud.migrate import SchemaTooNew

    try:
        return asyncio.run(_serve(config))
    except SchemaTooNew as e:
        print(f"ringtail cloud: {e}", file=sys.stderr)
        return 3


async def _serve(config) -> int:
    from cloud.writer import Writer

    writer = Writer(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, writer.stop)
    await writer.run()
    return 0
