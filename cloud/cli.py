"""`ringtail cloud ...`: run the JetStream → ClickHouse writer, the HTTP API, or both in
one process (`run`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from ringtail.logs import add_log_level, setup_logging


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cloud",
        help="the cloud side: the JetStream → ClickHouse writer and the HTTP API",
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
    add_log_level(w)
    w.set_defaults(run=_run_writer)
    a = csub.add_parser(
        "api",
        help="serve the HTTP API (docs/api.md) until SIGTERM",
        description="Serve the HTTP API. Without --config: http://127.0.0.1:8000, chDB data "
        "under ./var/clickhouse (chDB allows one process: to write too, use `ringtail cloud "
        "run`, or a server with CLICKHOUSE_URL). Bearer tokens come from RINGTAIL_API_TOKENS "
        "or [api] tokens; with none, one is generated and printed at start.",
    )
    a.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    a.add_argument("--host", help="listen address (overrides api.host)")
    a.add_argument("--port", type=int, help="listen port (overrides api.port)")
    add_log_level(a)
    a.set_defaults(run=_run_api)
    r = csub.add_parser(
        "run",
        help="run the writer and the API in one process (chDB) until SIGTERM",
        description="Run the writer and serve the HTTP API in one process, sharing one "
        "database: chDB allows one process per directory. Without --config: NATS at "
        "nats://127.0.0.1:4222, chDB data under ./var/clickhouse, the API on "
        "http://127.0.0.1:8000, and a bearer token generated and printed at start unless "
        "RINGTAIL_API_TOKENS or [api] tokens sets one. SIGTERM or Ctrl-C stops the API, "
        "lets the writer finish the fetch in hand, and exits 0.",
    )
    r.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    r.add_argument("--host", help="listen address (overrides api.host)")
    r.add_argument("--port", type=int, help="listen port (overrides api.port)")
    r.add_argument(
        "--max-query-s",
        type=float,
        default=10.0,
        metavar="S",
        help="on chDB, an API statement running longer is stopped (503), so it holds the "
        "shared database at most this long (default: 10)",
    )
    add_log_level(r)
    r.set_defaults(run=_run_both)


def _run_writer(args: argparse.Namespace) -> int:
    from cloud.config import ConfigError, load_config

    setup_logging(args.log_level)
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


def _run_both(args: argparse.Namespace) -> int:
    from cloud.run import run_command

    setup_logging(args.log_level)
    return run_command(args)


def _run_api(args: argparse.Namespace) -> int:
    """Exit 2: bad configuration; 3: schema newer than this code; 4: ClickHouse did not
    answer within api.startup_wait_s."""
    from cloud.api.launch import StartupError, announce_token, api_settings, open_store_waiting
    from cloud.api.settings import ConfigError, load_api_config

    setup_logging(args.log_level)
    try:
        config = load_api_config(args.config)
    except ConfigError as e:
        print(f"ringtail cloud: {e}", file=sys.stderr)
        return 2
    settings, tokens, generated = api_settings(config, args.host, args.port)

    import uvicorn

    from cloud.api import create_app
    from cloud.migrate import SchemaTooNew, migrate

    try:
        store = open_store_waiting(
            config.clickhouse,
            settings.startup_wait_s,
            f"is a writer using {config.clickhouse.chdb_path}? Stop it and use `ringtail cloud "
            "run` (both in one process), or a server with CLICKHOUSE_URL",
        )
    except StartupError as e:
        print(f"ringtail cloud: {e}", file=sys.stderr)
        return e.exit_code
    try:
        migrate(store)
        app = create_app(settings, store, tokens)
        announce_token("cloud api", generated)
        print(
            f"ringtail cloud api: http://{settings.host}:{settings.port} "
            f"(OpenAPI at /docs and /openapi.json)",
            file=sys.stderr,
            flush=True,
        )
        # uvicorn drains on SIGTERM/SIGINT, restores the handlers it found and raises the
        # signal again; with these no-op handlers that re-raise returns, so a drained stop
        # exits 0 like the writer instead of dying by the signal.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: None)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
    except SchemaTooNew as e:
        print(f"ringtail cloud: {e}", file=sys.stderr)
        return 3
    finally:
        store.close()
    return 0
