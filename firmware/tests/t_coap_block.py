"""coap.Client Block1 transfers (RFC 7959) with a scripted peer: blocks and Size1, a smaller
SZX asked in 2.31 or 4.13, errors mid-transfer; and the heap a post allocates."""

import asyncio
import gc

import coap
import mptest
from coapsrv import CON, Peer, ack_for, client, run, ubytes, with_peer
from mptest import check, metric


def _block_server(parts, shrink_to=-1, refuse_first_szx=-1):
    """A Block1 receiver: collects the blocks in `parts`; asks for SZX `shrink_to` in its
    first 2.31; answers an unblocked request (or one at a larger SZX than
    refuse_first_szx) with 4.13 + Block1 asking for refuse_first_szx."""

    def h(peer, m, t):
        if m.typ != CON:
            return
        b1 = m.uint(27)
        if refuse_first_szx >= 0 and (b1 < 0 or (b1 & 7) > refuse_first_szx):
            peer.send(ack_for(m, 0x8D, ((27, ubytes(refuse_first_szx)),), b""))
            return
        if b1 < 0:
            parts.append((0, m.payload))
            peer.send(ack_for(m))
            return
        num = b1 >> 4
        szx = b1 & 7
        parts.append(((num << (szx + 4)), m.payload, m.uint(60)))
        if b1 & 8:
            rszx = szx
            if shrink_to >= 0 and len(parts) == 1:
                rszx = shrink_to
            peer.send(ack_for(m, 0x5F, ((27, ubytes((num << 4) | 8 | rszx)),), b""))
        else:
            peer.send(ack_for(m, 0x44, ((27, ubytes(b1)),)))

    return h


def _payload(n):
    b = bytearray(n)
    for i in range(n):
        b[i] = (i * 7 + 3) & 0xFF
    return b


def _assemble(parts):
    out = bytearray()
    for p in parts:
        check(p[0] == len(out), "block at", p[0], "after", len(out), "bytes")
        out += p[1]
    return bytes(out)


def test_block1_transfer():
    data = _payload(2500)
    parts = []

    async def body(c, peer):
        code = await c.post(b"t", data)
        check(code == coap.CHANGED, coap.code_text(code))
        check(_assemble(parts) == data, "reassembled payload differs")
        check([len(p[1]) for p in parts] == [1024, 1024, 452], [len(p[1]) for p in parts])
        check(parts[0][2] == 2500 and parts[1][2] == -1, "Size1 only in block 0")
        mids = [m.mid for _, m in peer.got]
        check(len(set(mids)) == 3, "each block is its own exchange")

    run(with_peer(_block_server(parts), body, ack_timeout_ms=200))


def test_block1_smaller_szx_from_continue():
    data = _payload(2500)
    parts = []

    async def body(c, peer):
        code = await c.post(b"t", data)
        check(code == coap.CHANGED and _assemble(parts) == data, coap.code_text(code))
        sizes = [len(p[1]) for p in parts]
        check(sizes == [1024, 512, 512, 452], sizes)

    run(with_peer(_block_server(parts, shrink_to=5), body, ack_timeout_ms=200))


def test_block1_restart_on_413_with_block1():
    data = _payload(700)  # one message at SZX 6; the peer wants 256-byte blocks
    parts = []

    async def body(c, peer):
        code = await c.post(b"t", data)
        check(code == coap.CHANGED and _assemble(parts) == data, coap.code_text(code))
        check([len(p[1]) for p in parts] == [256, 256, 188], [len(p[1]) for p in parts])
        check(peer.got[0][1].uint(27) == -1, "first try should be unblocked")

    run(with_peer(_block_server(parts, refuse_first_szx=4), body, ack_timeout_ms=200))


def test_413_with_size1_is_final():
    def h(peer, m, t):
        if m.typ == CON:
            peer.send(ack_for(m, 0x8D, ((60, ubytes(1000)),), b"\xa0"))

    async def body(c, peer):
        code = await c.post(b"t", _payload(1500))
        check(code == coap.REQUEST_ENTITY_TOO_LARGE and c.size1 == 1000, code, c.size1)
        check(len(peer.requests()) == 1, "4.13 without a smaller Block1 must end the transfer")

    run(with_peer(h, body, ack_timeout_ms=200))


def test_block1_error_mid_transfer_is_returned():
    def h(peer, m, t):
        if m.typ == CON:
            if m.uint(27) >> 4 == 0:
                peer.send(ack_for(m, 0x5F, ((27, ubytes(m.uint(27))),), b""))
            else:
                peer.send(ack_for(m, 0x88, (), b"\xa0"))  # 4.08: transfer lost

    async def body(c, peer):
        code = await c.post(b"t", _payload(3000))
        check(code == coap.REQUEST_ENTITY_INCOMPLETE and len(peer.requests()) == 2, code)

    run(with_peer(h, body, ack_timeout_ms=200))


# --- allocation ----------------------------------------------------------------------------


class _EchoAck:
    """A peer that allocates nothing: its socket connected to the client's address, it
    answers every CON with a fixed piggybacked answer carrying the request's MID and token:
    2.31 to a Block1 block with more to come, else 2.04."""

    def __init__(self, sock):
        self.s = sock
        self.rx = bytearray(1200)
        self.tx = bytearray(ack_for(_Fake(), 0x44, (), b"\xa1\x00\x01"))
        self.stop = False

    async def loop(self):
        rx = self.rx
        tx = self.tx
        while not self.stop:
            n = self.s.readinto(rx)  # one request at a time: nothing to run together
            if not n:
                await asyncio.sleep_ms(1)
                continue
            if rx[0] & 0x30 == 0:  # CON
                for i in range(2, 8):
                    tx[i] = rx[i]
                # the client's layout: Uri-Path "t" at 8, Content-Format at 10, Block1 at 12 (delta
                # 15: extension byte 2), its last value byte holds M
                more = rx[12] >> 4 == 13 and rx[13] == 2 and rx[13 + (rx[12] & 15)] & 8
                tx[1] = 0x5F if more else 0x44
                self.s.send(tx)


class _Fake:
    mid = 0
    token = b"\x00\x00\x00\x00"


async def _measure_posts(sizes, runs):
    peer = Peer()  # its socket, connected to the client once the client's address is known
    c = client(peer.port, ack_timeout_ms=500)
    c._open()
    c._sock.send(b"\x50\x00\x00\x00")  # an empty NON: only tells the peer our address
    await asyncio.sleep_ms(10)
    _, addr = peer.s.recvfrom(64)
    peer.s.connect(addr)
    echo = _EchoAck(peer.s)
    task = asyncio.create_task(echo.loop())
    out = []
    try:
        for n in sizes:
            payload = bytearray(n)
            for _ in range(3):
                await c.post(b"t", payload)  # warm every path
            m0 = c.messages
            gc.collect()
            gc.disable()
            try:
                before = gc.mem_alloc()
                for _ in range(runs):
                    code = await c.post(b"t", payload)
                    check(code == coap.CHANGED, code)
                grew = gc.mem_alloc() - before
            finally:
                gc.enable()
            out.append((n, grew // runs, (c.messages - m0) // runs))
    finally:
        echo.stop = True
        await asyncio.sleep_ms(5)
        task.cancel()
        c.close()
        peer.stop()
        await asyncio.sleep_ms(0)
    return out


def test_allocation_per_exchange():
    # What a post allocates does not grow with the payload: coroutine frames, two memoryview
    # slices per message and the received datagram (64-bit unix port; about half on 32-bit).
    for n, per, msgs in run(_measure_posts((60, 1000, 3000), 10)):
        metric("post_heap_bytes_payload_" + str(n) + "_messages_" + str(msgs), per)
        check(msgs == (3 if n > 1024 else 1), "messages per post", msgs)
        check(per <= 400 + 400 * msgs, "a post of", n, "bytes allocated", per, "bytes")


mptest.run(
    [
        test_block1_transfer,
        test_block1_smaller_szx_from_continue,
        test_block1_restart_on_413_with_block1,
        test_413_with_size1_is_final,
        test_block1_error_mid_transfer_is_returned,
        test_allocation_per_exchange,
    ]
)
