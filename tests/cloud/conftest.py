from __future__ import annotations

import pytest

from tests.gateway.harness import NatsServer


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()
