"""The board under test sampling and sending to a gateway on the test machine.

The firmware as flashed, its agent running from main.py, a real gateway and nats-server
here: the board's batches reach JetStream, each once, numbered without gaps, and a reset
in the middle of the uplink loses nothing its health reports said it had stored. On a
real board the gateway listens where `--board-gateway HOST:PORT` says the board reaches
this machine, and the board's config.json must already hold its Wi-Fi credentials
(docs/hwtests.md); on the virtual board it is 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from hwtests.board import Board
from protocol.batch import parse_batch
from protocol.envelope import parse_envelope
from protocol.health import parse_health
from tests.gateway.harness import GatewayProcess, NatsServer, free_port, stream_messages

DEVICE = "hwtest-uplink"
BATCH_S = 2  # a batch every 2 s, so a reset lands in the middle of an uplink
HEALTH_S = 5
WAIT_S = 90  # first boot of a real board includes joining its Wi-Fi


@pytest.fixture
def gateway_here(
    tmp_path: Path, gateway: tuple[str, int] | None
) -> Iterator[tuple[GatewayProcess, NatsServer, tuple[str, int]]]:
    """nats-server and the gateway on this machine; the address the board is given."""
    nats = NatsServer(tmp_path / "nats").start()
    if gateway is None:  # the virtual board, on this machine
        bind, address = "127.0.0.1", ("127.0.0.1", free_port(socket.SOCK_DGRAM))
    else:
        bind, address = "::", gateway
    work = tmp_path / "gateway"
    work.mkdir()
    gw = GatewayProcess(
        work, nats.url, port=address[1], settings={"coap": {"bind": bind}}, log_level="info"
    )
    try:
        gw.start()
        yield gw, nats, address
    finally:
        gw.stop()
        nats.stop()


def _received(nats_url: str) -> tuple[list, list]:
    """This device's batches and health reports in the streams, in stream order."""
    batches = [
        parse_batch(parse_envelope(data).payload)
        for _, headers, data in stream_messages(nats_url, "TELEMETRY")
        if headers.get("Nats-Msg-Id", "").startswith(f"{DEVICE}:")
    ]
    reports = [
        r
        for _, _, data in stream_messages(nats_url, "HEALTH")
        if (r := parse_health(parse_envelope(data).payload)).device == DEVICE
    ]
    return batches, reports


def _wait_for(nats_url: str, what: str, done) -> tuple[list, list]:
    deadline = time.monotonic() + WAIT_S
    while True:
        batches, reports = _received(nats_url)
        if done(batches, reports):
            return batches, reports
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no {what} in {WAIT_S} s: {len(batches)} batches, {len(reports)} health reports"
            )
        time.sleep(0.5)


def test_the_board_uplinks_to_a_gateway_here_and_a_reset_loses_nothing(
    board: Board,
    firmware: Path,
    gateway_here: tuple[GatewayProcess, NatsServer, tuple],
    tmp_path: Path,
) -> None:
    _, nats, address = gateway_here
    board.deploy(firmware=firmware, device=DEVICE, gateway=address, do_reset=False)
    config = json.loads(board.exec("print(open('config.json').read())"))
    config.update(batch_s=BATCH_S, health_s=HEALTH_S)
    local = tmp_path / "config.json"
    local.write_text(json.dumps(config))
    board.mpremote("fs", "cp", str(local), ":config.json")
    board.power_cycle()  # boots main.py: the agent samples and sends

    def running(b: list, r: list) -> bool:
        """The boot now running (its health reports say which: a real board's ring may
        still hold records of earlier boots) has sent 3 batches and reported what it
        stored (a boot's first report can come before it stored anything)."""
        if not any(x.sampled for x in r):
            return False
        boot = max(x.boot for x in r)
        return sum(x.boot == boot for x in b) >= 3

    batches, reports = _wait_for(nats.url, "3 batches and a report of what was stored", running)
    first_boot = max(r.boot for r in reports)
    board.power_cycle()  # mid-uplink: a batch goes out every BATCH_S
    batches, reports = _wait_for(
        nats.url,
        "2 batches of the next boot",
        lambda b, r: sum(x.boot > first_boot for x in b) >= 2,
    )
    # what the first boot had stored by its last health report reached the stream too
    sampled = [r.sampled for r in reports if r.boot == first_boot and r.sampled]
    stored = max(last for _, last in sampled)
    batches, _ = _wait_for(
        nats.url,
        f"the first boot's readings up to seq {stored}",
        lambda b, r: any(x.boot == first_boot and x.last_seq >= stored for x in b),
    )

    # the first boot's batches start where its health reports say its sampling started
    started = min(first for first, _ in sampled)
    assert min(b.seq for b in batches if b.boot == first_boot) == started
    # each batch once, and per boot the readings numbered without a gap or an overlap
    keys = [(b.boot, b.seq) for b in batches]
    assert len(keys) == len(set(keys)), "a batch is in the stream twice"
    for boot in {b.boot for b in batches}:
        mine = sorted((b for b in batches if b.boot == boot), key=lambda b: b.seq)
        for before, after in pairwise(mine):
            assert after.seq == before.last_seq + 1, (
                f"boot {boot}: batch at seq {after.seq} after one ending at {before.last_seq}"
            )
    assert max(b.boot for b in batches) > first_boot
