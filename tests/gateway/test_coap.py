"""The gateway's CoAP front (gateway/coap.py) in-process: routing, and aiocoap's Message-ID
duplicate detection as the gateway bounds it. Raw datagrams, so Message IDs are ours."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from aiocoap.transports.udp6 import UDP6EndpointAddress
from hypothesis import given
from hypothesis import strategies as st

from gateway.coap import _response_address, build_site, serve
from gateway.ingest import Reply
from protocol.constants import CHANGED

from .harness import free_port

_CON, _NON, _ACK = 0, 1, 2
_GET, _POST = 0x01, 0x02
_INTERNAL_SERVER_ERROR = 0xA0  # 5.00


class _CountingIngest:
    """Stands in for gateway.ingest.Ingest: answers 2.04 and counts what it handled."""

    def __init__(self) -> None:
        self.handled: list[bytes] = []
        self.delay_s = 0.0  # how long an answer takes (a slow spool commit)
        self.fail = False

    async def telemetry(self, payload: bytes, content_format: int | None) -> Reply:
        self.handled.append(payload)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("the ingest path broke")
        return Reply(CHANGED, b"\xa1\x00" + bytes([len(self.handled)]))

    health = telemetry


def _request(
    code: int, mid: int, token: bytes, path: bytes, payload: bytes = b"", mtype: int = _CON
) -> bytes:
    head = struct.pack("!BBH", 0x40 | mtype << 4 | len(token), code, mid) + token
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
    return await _receive(sock)


async def _receive(sock: socket.socket) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 2048), 5)


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


def test_a_slow_answer_is_acknowledged_first_then_sent_confirmable():
    """RFC 7252 §5.2.2: an answer not ready within EMPTY_ACK_DELAY follows an empty ACK as a
    separate CON response under the request's token, retransmitted until acknowledged."""

    async def body(sock, ingest, context):
        ingest.delay_s = 0.5
        empty_ack = await _exchange(sock, _request(_POST, 0x0101, b"slow", b"t", b"\xa0"))
        assert _parse(empty_ack) == (_ACK, 0, 0x0101, b"")
        separate = await _receive(sock)
        mtype, code, mid, payload = _parse(separate)
        assert (mtype, code, payload) == (_CON, CHANGED, b"\xa1\x00\x01")
        assert separate[4:8] == b"slow"  # the request's token
        again = await _receive(sock)  # not acknowledged yet: retransmitted, same message
        assert again == separate
        await asyncio.get_running_loop().sock_sendall(sock, struct.pack("!BBH", 0x60, 0, mid))
        with pytest.raises(TimeoutError):  # acknowledged: no more retransmissions
            await _receive(sock)

    asyncio.run(_with_server(16, body))


def test_a_non_confirmable_post_gets_a_non_confirmable_answer():
    async def body(sock, ingest, context):
        reply = await _exchange(sock, _request(_POST, 0x0202, b"nn", b"t", b"\xa0", _NON))
        mtype, code, _, payload = _parse(reply)
        assert (mtype, code, payload) == (_NON, CHANGED, b"\xa1\x00\x01")
        assert reply[4:6] == b"nn"

    asyncio.run(_with_server(16, body))


def test_a_failing_handler_answers_5_00_and_the_server_keeps_serving():
    async def body(sock, ingest, context):
        ingest.fail = True
        reply = await _exchange(sock, _request(_POST, 0x0303, b"f1", b"t", b"\xa0"))
        assert _parse(reply)[:3] == (_ACK, _INTERNAL_SERVER_ERROR, 0x0303)
        ingest.fail = False
        reply = await _exchange(sock, _request(_POST, 0x0304, b"f2", b"t", b"\xa0"))
        assert _parse(reply)[:2] == (_ACK, CHANGED)

    asyncio.run(_with_server(16, body))


_V4_MAPPED = bytes(10) + b"\xff\xff"
_LOCAL_ADDRESSES = [
    bytes(15) + b"\x01",  # ::1
    _V4_MAPPED + bytes([127, 0, 0, 1]),
    b"\xff\x02" + bytes(13) + b"\xfd",  # ff02::fd, All CoAP Nodes
    _V4_MAPPED + bytes([224, 0, 1, 187]),  # All CoAP Nodes over IPv4
    _V4_MAPPED + bytes([239, 255, 255, 255]),
    _V4_MAPPED + bytes([240, 0, 0, 1]),
    _V4_MAPPED + bytes([223, 255, 255, 255]),
]


@pytest.mark.parametrize("local", _LOCAL_ADDRESSES)
def test_answers_go_back_where_aiocoap_would_send_them(local: bytes) -> None:
    """A request that came in on a multicast address is answered from a unicast one (no
    pktinfo), any other from the address it came to: the same choice as aiocoap's own."""
    _assert_same_response_address(local)


@given(st.binary(min_size=16, max_size=16))
def test_response_address_agrees_with_aiocoap_on_any_local_address(local: bytes) -> None:
    _assert_same_response_address(local)


class _Interface:
    """Stands for the message interface an address refers to (held by weak reference)."""


_INTERFACE = _Interface()


def _assert_same_response_address(local: bytes) -> None:
    remote = UDP6EndpointAddress(
        ("::ffff:127.0.0.1", 5683, 0, 0), _INTERFACE, pktinfo=struct.pack("16sI", local, 1)
    )
    ours, aiocoaps = _response_address(remote), remote.as_response_address()
    assert (ours is remote) == (aiocoaps is remote)
    assert (ours.sockaddr, ours.pktinfo) == (aiocoaps.sockaddr, aiocoaps.pktinfo)
