"""coap.Client exchanges with a scripted peer in the same asyncio loop: piggybacked and
separate responses, the retransmission schedule and timeout (RFC 7252 §4.2), duplicates and
late answers, RST, NON, no route."""

import asyncio
import time

import coap
import mptest
from clock import DeviceClock
from coapsrv import ACK, CON, NON, RST, Peer, ack_for, client, msg, run, with_peer
from mptest import check, metric


def test_piggybacked_response():
    def h(peer, m, t):
        if m.typ == CON:
            peer.send(ack_for(m, payload=b"\xa1\x00\x01"))

    async def body(c, peer):
        code = await c.post(b"t", b"\xa0")
        check(code == coap.CHANGED, coap.code_text(code))
        check(bytes(c.payload()) == b"\xa1\x00\x01" and c.retransmits == 0, c.retransmits)
        m = peer.got[0][1]
        check(m.opt(11) == b"t" and m.uint(12) == 60 and m.payload == b"\xa0", m.opts)
        check(c.t_recv >= c.t_send and not c.retransmitted, c.t_send, c.t_recv)
        # the next request: next MID, a new token
        code = await c.post(b"t", b"\xa0")
        m2 = peer.got[1][1]
        check(m2.mid == (m.mid + 1) & 0xFFFF and m2.token != m.token, m.mid, m2.mid)

    run(with_peer(h, body, ack_timeout_ms=200))


def test_retransmission_schedule():
    # The peer ignores the first 3 copies: the gaps are T, 2T, 4T with T drawn from
    # [ACK_TIMEOUT, ACK_TIMEOUT * 1.5], every copy with the same MID and token.
    def h(peer, m, t):
        if len(peer.got) > 3:
            peer.send(ack_for(m))

    async def body(c, peer):
        code = await c.post(b"t", b"\xa0")
        check(code == coap.CHANGED, coap.code_text(code))
        check(c.retransmits == 3 and c.retransmitted, c.retransmits)
        ts = [t for t, _ in peer.got]
        gaps = [time.ticks_diff(ts[i + 1], ts[i]) for i in range(3)]
        metric("retransmit_gaps_ms_at_ack_timeout_200", "/".join(str(g) for g in gaps))
        # Each copy leaves at its deadline or late (a busy machine), never early: with every
        # lateness under `slack`, gap i lies in [(gap 0 - slack) * 2^i, gap 0 * 2^i + slack].
        slack = 80
        check(200 - 5 <= gaps[0] <= 300 + slack, "first timeout", gaps)
        for i in (1, 2):
            lo = (gaps[0] - slack) << i
            hi = (gaps[0] << i) + slack
            check(lo <= gaps[i] <= hi, "backoff not doubling", gaps)
        mids = [m.mid for _, m in peer.got]
        toks = [m.token for _, m in peer.got]
        check(len(set(mids)) == 1 and len(set(toks)) == 1, "retransmission changed MID/token")

    run(with_peer(h, body, ack_timeout_ms=200))


def test_timeout_after_max_retransmit():
    async def body(c, peer):
        t0 = time.ticks_ms()
        code = await c.post(b"t", b"\xa0")
        took = time.ticks_diff(time.ticks_ms(), t0)
        check(code == coap.TIMEOUT and c.timeouts == 1, coap.code_text(code))
        check(len(peer.got) == 5 and c.retransmits == 4, len(peer.got), c.retransmits)
        # MAX_TRANSMIT_SPAN + the last timeout: T * 31, T in [30, 45] ms
        check(30 * 31 <= took <= 45 * 31 + 300, "took", took)
        # a late answer to the timed-out MID does not confuse the next exchange
        m = peer.got[-1][1]
        peer.send(ack_for(m, payload=b"\x01"))
        peer.handler = lambda p, m2, t: p.send(ack_for(m2, payload=b"\x02"))
        code = await c.post(b"t", b"\xa0")
        check(code == coap.CHANGED and bytes(c.payload()) == b"\x02", bytes(c.payload()))

    run(with_peer(None, body, ack_timeout_ms=30))


def test_separate_response_is_acked():
    state = {"n": 0}

    def h(peer, m, t):
        if m.typ == CON and m.code == 2:
            state["n"] += 1
            peer.send(msg(ACK, 0, m.mid))  # empty ACK: the answer comes later
            sep = msg(CON, 0x44, 0x5000 + state["n"], m.token, (), b"\xa1\x00\x01")
            peer.later(300, sep)  # after more than ACK_TIMEOUT: no retransmission due
            if state["n"] == 1:
                peer.later(400, sep)  # a duplicate (as if our ACK were lost)

    async def body(c, peer):
        code = await c.post(b"t", b"\xa0")
        check(code == coap.CHANGED and c.retransmits == 0, code, c.retransmits)
        await asyncio.sleep_ms(20)  # the peer's task reads our ACK
        acks = [m for _, m in peer.got if m.typ == ACK]
        check(len(acks) == 1 and acks[0].mid == 0x5001 and acks[0].code == 0, "no ACK")
        # the duplicate arrives during the next exchange: ACKed again, not taken as its answer
        code = await c.post(b"t", b"\xa0")
        check(code == coap.CHANGED, code)
        await asyncio.sleep_ms(20)
        acks = [m.mid for _, m in peer.got if m.typ == ACK]
        check(acks.count(0x5001) == 2 and 0x5002 in acks, "duplicate not re-ACKed", acks)
        check(c.ignored >= 1, "duplicate was not ignored")

    run(with_peer(h, body, ack_timeout_ms=100))


def test_duplicates_and_late_responses_ignored():
    def h(peer, m, t):
        if m.typ != CON or m.code != 2:
            return
        peer.send(msg(ACK, 0x44, (m.mid - 1) & 0xFFFF, m.token, (), b"\x01"))  # older MID
        peer.send(msg(ACK, 0x44, m.mid, b"\x00\x00\x00\x00", (), b"\x02"))  # wrong token
        peer.send(msg(CON, 0x44, 0x6000, b"\x07\x07\x07\x07", (), b"\x03"))  # stray CON
        peer.send(msg(NON, 0x44, 0x6001, b"\x07\x07\x07\x07", (), b"\x04"))  # stray NON
        peer.later(20, ack_for(m, payload=b"\x05"))
        peer.later(30, ack_for(m, payload=b"\x06"))  # duplicate of the answer

    async def body(c, peer):
        code = await c.post(b"t", b"\xa0")
        check(code == coap.CHANGED and bytes(c.payload()) == b"\x05", bytes(c.payload()))
        check(c.ignored == 4, "ignored", c.ignored)
        await asyncio.sleep_ms(20)
        rst = [m for _, m in peer.got if m.typ == RST]
        check(len(rst) == 1 and rst[0].mid == 0x6000, "stray CON not answered with RST")

    run(with_peer(h, body, ack_timeout_ms=200))


def test_reset():
    def h(peer, m, t):
        if m.typ == CON:
            peer.send(msg(RST, 0, m.mid))

    async def body(c, peer):
        code = await c.post(b"t", b"\xa0")
        check(code == coap.RESET and c.resets == 1, code)

    run(with_peer(h, body, ack_timeout_ms=200))


def test_non_response_after_empty_ack():
    def h(peer, m, t):
        if m.typ == CON:
            peer.send(msg(ACK, 0, m.mid))
            peer.later(10, msg(NON, 0x44, 0x7000, m.token, (), b"\x09"))

    async def body(c, peer):
        code = await c.post(b"t", b"\xa0")
        check(code == coap.CHANGED and bytes(c.payload()) == b"\x09", code)
        await asyncio.sleep_ms(20)
        check(not [m for _, m in peer.got if m.typ != CON], "a NON response needs no ACK")

    run(with_peer(h, body, ack_timeout_ms=200))


def test_no_socket_is_neterr():
    c = coap.Client("host.invalid", 5683, DeviceClock(), ack_timeout_ms=20)
    code = run(c.post(b"t", b"\xa0"))
    check(code == coap.NETERR and c.neterrors == 1, code)


def test_unreachable_port_times_out():
    # Nothing listens: the kernel's ICMP errors surface as OSError on the socket; the client
    # counts them and carries on to its timeout.
    peer = Peer()
    port = peer.port
    peer.stop()
    c = client(port, ack_timeout_ms=20, max_retransmit=2)
    code = run(c.post(b"t", b"\xa0"))
    c.close()
    check(code == coap.TIMEOUT and c.retransmits == 2, code, c.retransmits)


mptest.run(
    [
        test_piggybacked_response,
        test_retransmission_schedule,
        test_timeout_after_max_retransmit,
        test_separate_response_is_acked,
        test_duplicates_and_late_responses_ignored,
        test_reset,
        test_non_response_after_empty_ack,
        test_no_socket_is_neterr,
        test_unreachable_port_times_out,
    ]
)
