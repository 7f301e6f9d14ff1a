"""sd_notify(3) without libsystemd: READY, STOPPING, STATUS and the watchdog ping.

Each is one datagram to $NOTIFY_SOCKET; outside systemd the variable is unset and these do
nothing. The watchdog is fed from the event loop itself, so a stalled loop stops the pings
and systemd restarts the service (WatchdogSec in gateway/deploy/ringtail-gateway.service).
"""

from __future__ import annotations

import asyncio
import os
import socket


def notify(state: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(address)
        s.sendall(state.encode())
    return True


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec, if the watchdog is on for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


async def feed_watchdog(interval_s: float) -> None:
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
