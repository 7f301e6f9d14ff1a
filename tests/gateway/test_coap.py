"""The gateway's CoAP front (gateway/coap.py) in-process: routing, and aiocoap's Message-ID
duplicate detection as the gateway bounds it. Raw datagrams, so Message IDs are ours."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from gateway.coap import build_site, serve
from gateway.ingest import Reply
from protocol.constants import CHANGED

from .harness import free_port

_CON, _ACK = 0, 2
_GET, _POST = 0x01, 0x02


class _CountingIngest:
    """Stands in for gateway.ingest.Ingest: answers 2.04 and counts what it handled."""

    def __init__(self) -> None:
        self.handled: list[bytes] = []

    async def telemetry(self, payload: bytes, content_format: int | None) -> Reply:
        self.handled.append(payload)
        return Reply(CHANGED, b"\xa1\x00" + bytes([len(self.handled)]))

    health = telemetry


def _request(code: int, mid: int, token: bytes, path: bytes, payload: bytes = b"") -> bytes:
    head = struct.pack("!BBH", 0x40 | len(token), code, mid) + token
    options = bytes([0xB0 | len(path)]) + path + b"\x11\x3c"  # Uri-Path, Content-Format 60
    return head + options + (b"\xff" + payload if payload else b"")


def _parse(data: bytes) -> tuple[int, int, int, bytes]:
    """(type, code, message id, payload) of a response."""
    mtype, code, mid = (data[0] >> 4) & 3, data[1], struct.unpack_from("!H", data, 2)[0]
    payload = data.split(b"\xff", 1)[1] if b"\xff" in data[4:] else b""
    return mtype, code, mid, payload


async def _exchange(sock: socket.socket, datagram: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, datagram)
    return await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)


async def _with_server(max_exchanges: int, body) -> None:
    ingest = _CountingIngest()
    site = build_site(ingest, max_reassemblies=4, retry_after_s=5)  # type: ignore[arg-type]
    port = free_port(socket.SOCK_DGRAM)
    context = await serve(site, ("127.0.0.1", port), max_exchanges)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", port))
    try:
        await body(sock, ingest, context)
    finally:
        sock.close()
        await context.shutdown()


def test_a_retransmission_is_answered_from_memory_and_handled_once():
    async def body(sock, ingest, context):
        first = await _exchange(sock, _request(_POST, 0x1234, b"tk01", b"t", b"\xa0"))
        again = await _exchange(sock, _request(_POST, 0x1234, b"tk01", b"t", b"\xa0"))
        assert _parse(first) == (_ACK, CHANGED, 0x1234, b"\xa1\x00\x01")
        assert again == first  # the stored answer, byte for byte
        assert len(ingest.handled) == 1

    asyncio.run(_with_server(16, body))


def test_duplicate_memory_is_bounded_and_a_forgotten_exchange_is_handled_again():
    async def body(sock, ingest, context):
        for mid in range(10):
            await _exchange(sock, _request(_POST, mid, b"tk%02d" % mid, b"t", b"\xa0"))
        managers = [ri.token_interface for ri in context.request_interfaces]
        assert [len(m._ringtail_recent) for m in managers] == [3]
        await _exchange(sock, _request(_POST, 9, b"tk09", b"t", b"\xa0"))  # remembered
        assert len(ingest.handled) == 10
        reply = await _exchange(sock, _request(_POST, 0, b"tk00", b"t", b"\xa0"))  # forgotten
        assert _parse(reply)[1] == CHANGED
        assert len(ingest.handled) == 11

    asyncio.run(_with_server(3, body))


@pytest.mark.parametrize(
    ("code", "path", "expected"),
    [(_POST, b"x", 0x84), (_GET, b"t", 0x85), (_POST, b"h", CHANGED)],
    ids=["unknown path 4.04", "GET 4.05", "health 2.04"],
)
def test_routing_answers_like_an_aiocoap_site(code, path, expected):
    async def body(sock, ingest, context):
        reply = await _exchange(sock, _request(code, 7, b"tk", path, b"\xa0"))
        assert _parse(reply)[1] == expected

    asyncio.run(_with_server(16, body))
