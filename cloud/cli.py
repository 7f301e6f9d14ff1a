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


def add_audit_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="check exactly-once: sampled readings against rows in ClickHouse",
        description="For each device boot, the readings the device reports as sampled (its "
        "health reports) against the rows in ClickHouse: missing, duplicated, late (reached "
        "the gateway more than --late seconds after sampling) and ahead of the last report. "
        "Exits 0 when nothing is missing or duplicated, 1 otherwise, 2 on a bad "
        "configuration, 4 when the database or API does not answer. Reads the database of "
        "--config (as the writer: CLICKHOUSE_URL or chDB under ./var/clickhouse), or, while "
        "`ringtail cloud run` holds the embedded database, the API given with --api.",
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="the cloud's TOML configuration")
    p.add_argument("--api", metavar="URL", help="read through the HTTP API at URL instead")
    p.add_argument(
        "--token",
        metavar="TOKEN",
        help="bearer token for --api (default: RINGTAIL_API_TOKEN from the environment)",
    )
    p.add_argument("--device", metavar="ID", help="audit one device")
    p.add_argument(
        "--late", type=float, default=300.0, metavar="S", help="late threshold (default: 300)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_run_audit)


def _run_audit(args: argparse.Namespace) -> int:
    import json
    import os

    from cloud.audit import AuditReport, audit

    if args.late < 0:
        print("ringtail audit: --late must be >= 0", file=sys.stderr)
        return 2
    if args.api:
        import urllib.error
        import urllib.parse
        import urllib.request

        token = args.token or os.environ.get("RINGTAIL_API_TOKEN", "")
        if not token:
            print("ringtail audit: --api needs --token or RINGTAIL_API_TOKEN", file=sys.stderr)
            return 2
        path = f"/devices/{urllib.parse.quote(args.device)}/audit" if args.device else "/audit"
        url = args.api.rstrip("/") + path + "?" + urllib.parse.urlencode({"late_s": args.late})
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            print(f"ringtail audit: {url}: HTTP {e.code} {e.read()[:200]!r}", file=sys.stderr)
            return 4 if e.code >= 500 else 2
        except (OSError, ValueError) as e:
            print(f"ringtail audit: {args.api} did not answer: {e}", file=sys.stderr)
            return 4
        report = AuditReport.from_dict(body)
    else:
        from cloud.config import ConfigError, load_config
        from cloud.store import StoreError, open_store

        try:
            config = load_config(args.config)
        except ConfigError as e:
            print(f"ringtail audit: {e}", file=sys.stderr)
            return 2
        ch = config.clickhouse
        try:
            store = open_store(ch.url, ch.chdb_path, ch.timeout_s)
        except StoreError as e:
            hint = (
                ""
                if ch.url
                else (
                    f" (chDB allows one process per directory: if `ringtail cloud run` holds "
                    f"{ch.chdb_path}, use --api http://127.0.0.1:8000 with its token)"
                )
            )
            print(f"ringtail audit: ClickHouse did not answer: {e}{hint}", file=sys.stderr)
            return 4
        try:
            report = audit(store, device=args.device, late_s=args.late)
        except StoreError as e:
            print(f"ringtail audit: {e}", file=sys.stderr)
            return 4
        finally:
            store.close()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.render())
    return 0 if report.ok else 1
