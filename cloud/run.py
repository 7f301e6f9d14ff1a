"""`ringtail cloud run`: the writer and the API in one process.

chDB allows one process per data directory, so on the embedded engine the writer and the
API cannot be two processes; here they share one store:

- The writer runs on the main thread's event loop; uvicorn serves the API on its own
  thread with its own event loop, so the writer's CPU work (decoding a fetch) never blocks
  the API's accept/respond loop, and a busy API never delays the writer's fetch and ack.
- A chDB session runs one statement at a time and is not safe to use from several threads.
  Every statement of either side goes through `SharedStore`, one FIFO (ticket) lock around
  each call: a waiter is served in arrival order, never overtaken. The API's `QueryStore`
  already serializes requests among themselves, and the writer's loops share one asyncio
  lock, so at most one statement of each side waits here: each side waits for at most one
  statement of the other.
- That statement is bounded on both sides. A writer insert is at most
  `clickhouse.max_rows_per_insert` rows (well under a second on chDB). An API statement
  runs with `max_execution_time = --max-query-s` (default 10 s): beyond it ClickHouse
  stops it and the request gets a 503, so a query over a huge range cannot hold the
  writer longer than that. The writer's statements run without a limit (a cut insert
  would only be retried).

With `CLICKHOUSE_URL` (a server) nothing is shared: the writer opens its own client as
`ringtail cloud writer` does, and the API takes concurrent queries unlocked.

Stop (SIGTERM, Ctrl-C): the API stops accepting and drains its requests, the writer
finishes the fetch in hand (insert and ack, or leave it unacked), then the store is closed
and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from cloud.store import Store

if TYPE_CHECKING:
    import uvicorn

    from cloud.writer import Writer

log = logging.getLogger("ringtail.cloud.run")

T = TypeVar("T")
# uvicorn's drain of requests in flight at stop; an API statement is bounded by
# --max-query-s, so this only cuts a slow client.
GRACEFUL_SHUTDOWN_S = 15
# How long a stopping writer may take to finish the fetch in hand (fetch_timeout_s, then an
# insert of at most max_rows_per_insert rows and the acks). Past it (e.g. it is still in
# nats-py's initial connect, which retries forever while NATS is unreachable) it is
# cancelled: safe, as nothing unacked is lost (JetStream redelivers it), and an insert
# already running in a worker thread still holds the store lock, which close() waits for.
WRITER_STOP_S = 10.0


class FifoLock:
    """A mutex that serves waiters in arrival order. `threading.Lock` is not fair: a thread
    that releases and at once re-acquires can win again and again, so a stream of API
    requests could starve the writer (or the reverse) without bound."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class SharedStore:
    """One chDB session used by several threads, one statement at a time (FifoLock).

    Each user takes a `view` with its own statement time limit; the session setting
    `max_execution_time` is switched, under the lock, to the limit of whoever runs next
    (a SET costs ~0.1 ms on chDB, and is skipped when the limit is already in force)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = FifoLock()
        self._limit_s: float | None = None  # unknown until the first switch
        self.engine = store.engine

    def view(self, max_execution_s: float) -> SharedStoreView:
        """A `Store` whose statements run with this limit (0: none); closing it is a no-op,
        the owner closes the shared store."""
        return SharedStoreView(self, max_execution_s)

    def run(self, limit_s: float, call: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._limit_s != limit_s:
                self.store.command(f"SET max_execution_time = {limit_s:g}")
                self._limit_s = limit_s
            return call(*args)

    def close(self) -> None:
        with self._lock:
            self.store.close()


class SharedStoreView:
    """The `Store` interface over a SharedStore, with one statement time limit."""

    def __init__(self, shared: SharedStore, limit_s: float) -> None:
        self._shared = shared
        self._limit_s = limit_s
        self.engine = shared.engine

    def command(self, sql: str) -> None:
        self._shared.run(self._limit_s, self._shared.store.command, sql)

    def query(self, sql: str) -> list[list[Any]]:
        return self._shared.run(self._limit_s, self._shared.store.query, sql)

    def insert_arrow(
        self, table: str, columns: list[str], stream: bytes, settings: dict[str, Any]
    ) -> int:
        store = self._shared.store
        return self._shared.run(self._limit_s, store.insert_arrow, table, columns, stream, settings)

    def close(self) -> None:
        """The shared store outlives its views; its owner closes it."""


def run_command(args: argparse.Namespace) -> int:
    """Exit 2: bad configuration; 3: schema newer than this code; 4: ClickHouse did not
    answer within api.startup_wait_s; 1: the API could not serve (e.g. port taken) or the
    writer failed."""
    from cloud.api.launch import StartupError, announce_token, api_settings, open_store_waiting
    from cloud.api.settings import ConfigError, load_api_config
    from cloud.config import load_config

    try:
        wconfig = load_config(args.config)
        aconfig = load_api_config(args.config)
    except ConfigError as e:
        print(f"ringtail cloud: {e}", file=sys.stderr)
        return 2
    if args.max_query_s <= 0:
        print("ringtail cloud: --max-query-s must be more than 0", file=sys.stderr)
        return 2
    settings, tokens, generated = api_settings(aconfig, args.host, args.port)

    from cloud.api import create_app
    from cloud.migrate import SchemaTooNew, apply_tiering, migrate
    from cloud.store import StoreError
    from cloud.writer import Writer

    # Both loaders read [clickhouse] and its variables by the same rules: one database.
    ch = wconfig.clickhouse
    try:
        store = open_store_waiting(
            ch, settings.startup_wait_s, f"is another ringtail using {ch.chdb_path}?"
        )
    except StartupError as e:
        print(f"ringtail cloud: {e}", file=sys.stderr)
        return e.exit_code
    shared = SharedStore(store) if store.engine == "chdb" else None
    try:
        try:
            version = migrate(store)
            tiering = apply_tiering(store)
        except SchemaTooNew as e:
            print(f"ringtail cloud: {e}", file=sys.stderr)
            return 3
        except StoreError as e:
            print(f"ringtail cloud: ClickHouse did not answer: {e}", file=sys.stderr)
            return 4
        log.info("schema at version %d (%s), cold tiering %s", version, store.engine, tiering)
        if shared is not None:
            writer = Writer(wconfig, store=shared.view(0))
            api_store: Store = shared.view(args.max_query_s)
        else:
            writer = Writer(wconfig)  # a server: its own client, as `ringtail cloud writer`
            api_store = store
        app = create_app(settings, api_store, tokens)

        import uvicorn

        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_level=args.log_level,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            )
        )
        where = "a ClickHouse server (CLICKHOUSE_URL)" if ch.url else f"chDB in {ch.chdb_path}"
        print(
            f"ringtail cloud run: writer {wconfig.nats.url} ({wconfig.nats.stream}) → {where}",
            file=sys.stderr,
            flush=True,
        )
        announce_token("cloud run", generated)
        return asyncio.run(_serve(writer, server, f"http://{settings.host}:{settings.port}"))
    finally:
        # Both sides have stopped (or never started): nothing uses the session any more.
        (shared or store).close()


async def _serve(writer: Writer, server: uvicorn.Server, url: str) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # uvicorn installs no signal handlers off the main thread: the stop is ours to give.
    api = threading.Thread(target=server.run, name="ringtail-api", daemon=True)
    api.start()
    writer_task = asyncio.create_task(writer.run())
    rc, announced = 0, False
    try:
        while not stop.is_set():
            if writer_task.done():
                log.error("the writer stopped on its own; stopping")
                rc = 1
                break
            if not api.is_alive():
                log.error("the API server stopped on its own (port taken?); stopping")
                rc = 1
                break
            if server.started and not announced:
                announced = True
                print(
                    f"ringtail cloud run: API at {url} (OpenAPI at {url}/docs and "
                    f"{url}/openapi.json)",
                    file=sys.stderr,
                    flush=True,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    finally:
        server.should_exit = True  # uvicorn polls it: stop accepting, drain, return
        writer.stop()
        await asyncio.to_thread(api.join)
        done, _ = await asyncio.wait({writer_task}, timeout=WRITER_STOP_S)
        if not done:
            log.warning("the writer did not stop within %.0f s; cancelling it", WRITER_STOP_S)
            writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer_task
        else:
            await writer_task  # re-raises a writer failure after the API has stopped
    return rc
