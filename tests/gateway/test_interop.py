"""Interop with an independent CoAP implementation: libcoap's coap-client."""

from __future__ import annotations

import subprocess

import cbor2
import pytest

from tests.debian import require_tools

from .harness import batch, stream_count, wait_until

CLIENT = "coap-client-notls"  # libcoap3-bin's client without DTLS


@pytest.fixture(scope="session")
def coap_client() -> str:
    """libcoap's client, installed from Debian when missing and we are root (CI is)."""
    return require_tools((CLIENT,), ("libcoap3-bin",))[CLIENT]


def _post(client: str, port: int, payload_file, path: str = "t") -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            client,
            "-m",
            "post",
            "-t",
            "60",
            "-f",
            str(payload_file),
            "-B",
            "10",
            f"coap://127.0.0.1:{port}/{path}",
        ],
        capture_output=True,
        timeout=60,
    )


def test_libcoap_posts_a_batch_and_gets_its_ack(
    coap_client, tmp_path, nats_server, gateway_factory
):
    gw = gateway_factory(nats_server.url).start()
    payload = tmp_path / "batch.cbor"
    payload.write_bytes(batch("libcoap-dev", boot=2, seq=40))
    out = _post(coap_client, gw.port, payload)
    assert out.returncode == 0, out.stderr
    ack = cbor2.loads(out.stdout)
    assert (ack[0], ack[1], ack[2]) == (1, 2, 42)
    wait_until(lambda: stream_count(nats_server.url) == 1, 20, "the batch in the stream")


def test_libcoap_block1_transfer_of_a_large_batch(
    coap_client, tmp_path, nats_server, gateway_factory
):
    gw = gateway_factory(nats_server.url).start()
    payload = tmp_path / "big.cbor"
    data = batch("libcoap-big", boot=1, seq=0, n=900)
    assert len(data) > 8 * 1024  # several 1 KiB blocks
    payload.write_bytes(data)
    out = subprocess.run(
        [
            coap_client,
            "-m",
            "post",
            "-t",
            "60",
            "-b",
            "1024",
            "-f",
            str(payload),
            "-B",
            "20",
            f"coap://127.0.0.1:{gw.port}/t",
        ],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert cbor2.loads(out.stdout)[2] == 899
