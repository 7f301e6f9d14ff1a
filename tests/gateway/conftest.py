from __future__ import annotations

import pytest

from .harness import GatewayProcess, NatsServer


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def gateway_factory(tmp_path):
    made: list[GatewayProcess] = []

    def make(nats_url: str, **settings) -> GatewayProcess:
        gw = GatewayProcess(tmp_path, nats_url, settings)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.stop()


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory):
    """One gateway for every fuzz example (a fresh process per example would dominate)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    server = NatsServer(tmp / "nats").start()
    gw = GatewayProcess(
        tmp, server.url, {"coap": {"rate_per_s": 10000.0, "rate_burst": 10000}}
    ).start()
    yield gw
    alive = gw.proc.poll() is None
    gw.stop()
    server.stop()
    assert alive, "the gateway died during the fuzz run"
