"""The gateway's lifecycle: start, serve, drain on SIGTERM, stop.

Start: recover the spool (reporting a torn tail), start publishing (connecting to NATS in
the background if it is down: the spool takes batches meanwhile), then open the CoAP
endpoint, then tell systemd READY. Stop: close the CoAP endpoint so nothing new is
accepted, let appends in progress finish, publish what can be published within
`drain_timeout_s`, close NATS, close the spool. What was not published stays in the spool
for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Any

import aiocoap

from gateway.coap import build_site, serve
from gateway.config import GatewayConfig
from gateway.ingest import Ingest, RateLimiter
from gateway.metrics import Metrics
from gateway.publisher import Publisher
from gateway.spool import Spool
from gateway.systemd import feed_watchdog, notify, watchdog_interval_s

log = logging.getLogger("ringtail.gateway")


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        s = config.spool
        self.spool = Spool(
            s.dir,
            max_bytes=s.max_bytes,
            segment_bytes=s.segment_bytes,
            sync=s.sync,
            commit_delay_s=s.commit_delay_ms / 1000,
            max_pending=s.max_pending,
        )
        self.publisher = Publisher(config, self.spool, self.metrics)
        self._context: aiocoap.Context | None = None

    async def start(self) -> None:
        c = self.config
        report = await self.spool.open()
        log.info(
            "spool %s: %d records in %d segments, %d to publish; %d bytes of torn tail "
            "truncated, %d corrupt records",
            c.spool.dir,
            report.records,
            report.segments,
            report.unacked,
            report.truncated_bytes,
            report.corrupt_records,
        )
        self.metrics.watch_spool(self.spool.stats)
        await self.publisher.start()
        limiter = RateLimiter(c.coap.rate_per_s, c.coap.rate_burst, c.coap.max_devices_tracked)
        ingest = Ingest(self.spool, limiter, self.metrics, c.coap.retry_after_s)
        site = build_site(
            ingest, max_reassemblies=c.coap.max_reassemblies, retry_after_s=c.coap.retry_after_s
        )
        self._context = await serve(site, (c.coap.bind, c.coap.port), c.coap.max_exchanges_tracked)
        if c.metrics.port:
            self.metrics.serve(c.metrics.bind, c.metrics.port)
        log.info(
            "gateway %s serving coap://[%s]:%d, publishing to %s",
            c.id,
            c.coap.bind,
            c.coap.port,
            c.nats.url,
        )

    async def stop(self) -> None:
        if self._context is not None:
            await self._context.shutdown()
            self._context = None
        drained = await self.publisher.drain(self.config.drain_timeout_s)
        await self.publisher.close()
        await self.spool.close()
        self.metrics.close()
        left = self.spool.stats().unacked
        if drained:
            log.info("gateway stopped; spool fully published")
        else:
            log.warning("gateway stopped; %d records left in the spool for the next start", left)


async def run(config: GatewayConfig) -> int:
    """Run until SIGTERM or SIGINT; returns the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(config)
    try:
        await gateway.start()
    except OSError as e:
        log.error("cannot start: %s", e)
        await gateway.stop()
        return 1
    # What exists now (modules, configuration, the spool's index) lives as long as the
    # process: keep it out of the garbage collector's full passes, which run again and
    # again under load.
    gc.freeze()
    notify("READY=1")
    watchdog = None
    interval = watchdog_interval_s()
    if interval:
        watchdog = loop.create_task(feed_watchdog(interval))
    stopped = loop.create_task(stop.wait())
    waiters: list[asyncio.Future[Any]] = [stopped, gateway.publisher.fatal]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    exit_code = 0
    if gateway.publisher.fatal.done():
        log.error("cannot publish: %s", gateway.publisher.fatal.result())
        exit_code = 1
    notify("STOPPING=1")
    log.info("stopping: draining for up to %.0f s", config.drain_timeout_s)
    await gateway.stop()
    if watchdog is not None:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
    return exit_code
