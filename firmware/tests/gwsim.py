"""A scripted gateway for the uplink's MicroPython tests (t_uplink, t_uplink_clock): batches
built like the agent builds them, a fake /t and /h on a coapsrv.Peer, and a ring + client +
uplink wired to it. Test code: allocates freely."""

import asyncio

import mptest
import uplink
from cbor import Encoder, dumps, loads
from clock import DeviceClock
from coapsrv import CON, Peer, ack_for, client
from mptest import check
from noremu import NorFlash
from store import open_store

DEVICE = b"dev-1"


def batch(boot, seq, counts=(3,), block=False, metric_name=b"temp"):
    """A telemetry batch (CDDL telemetry-batch) with plain series of `counts` readings, or
    block series (key 3 bytes + key 4 count) when `block`."""
    enc = Encoder(bytearray(512))
    enc.put_map(6)
    enc.put_int(0)
    enc.put_int(1)
    enc.put_int(1)
    enc.put_utf8(DEVICE)
    enc.put_int(2)
    enc.put_int(boot)
    enc.put_int(3)
    enc.put_int(seq)
    enc.put_int(4)
    enc.put_int(1000000)
    enc.put_int(6)
    enc.put_array(len(counts))
    for i, n in enumerate(counts):
        enc.put_map(3)
        enc.put_int(0)
        enc.put_utf8(metric_name + bytes([0x61 + i]))
        if block:
            enc.put_int(3)
            enc.put_bytes(b"\x01\x02\x03")
            enc.put_int(4)
            enc.put_int(n)
        else:
            enc.put_int(1)
            enc.put_array(n)
            for k in range(n):
                enc.put_int(k * 1000)
            enc.put_int(2)
            enc.put_array(n)
            for k in range(n):
                enc.put_int(k)
    return bytes(enc.view())


class Gateway:
    """The scripted gateway: `answer(b)` -> (code, body, max_age or -1) for batch b (a dict),
    default a telemetry-ack of the whole batch. Every gateway time it sends is the shared
    device clock + `skew_us`, so the true offset is known."""

    def __init__(self, clock, skew_us=1700000000000000):
        self.clock = clock
        self.skew = skew_us
        self.answer = None
        self.delay_ms = 0
        self.bodies = []  # payloads received, in order
        self.peer = Peer(self._handle, 400)  # batches here are small: a small receive buffer
        self.peer.keep = False  # `bodies` is the record: the heap is tight
        self.port = self.peer.port
        self.outstanding = 0
        self.max_outstanding = 0

    def now(self):
        return self.clock.now_us() + self.skew

    def ack(self, b):
        n = 0
        for s in b[6]:
            n += s[4] if 4 in s else len(s[1])
        return 0x44, dumps({0: 1, 1: b[2], 2: b[3] + n - 1, 3: self.now()}, 64), -1

    def error(self, code, reason="no", max_age=-1):
        return code, dumps({0: 1, 1: code, 2: reason, 3: self.now()}, 300), max_age

    def _handle(self, peer, m, t):
        if m.typ != CON or not m.code:
            return
        self.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        path = m.opt(11)
        self.bodies.append((path, m.payload))
        if path == b"h":
            reply = (0x44, dumps({0: 1, 1: self.now()}, 32), -1)
        else:
            b = loads(m.payload)
            reply = self.answer(b) if self.answer is not None else self.ack(b)
        code, body, age = reply
        opts = ((14, ubytes(age)),) if age >= 0 else ()
        if self.delay_ms:
            peer.tasks.append(asyncio.create_task(self._later(m, code, opts, body)))
        else:
            self.outstanding -= 1
            peer.send(ack_for(m, code, opts, body))

    async def _later(self, m, code, opts, body):
        await asyncio.sleep_ms(self.delay_ms)
        self.outstanding -= 1
        self.peer.send(ack_for(m, code, opts, body))

    def start(self):
        self.peer.start()
        return self

    def stop(self):
        self.peer.stop()


def ubytes(v):
    out = b""
    while v:
        out = bytes([v & 0xFF]) + out
        v >>= 8
    return out


def setup(records=(), ack_timeout_ms=100, **kw):
    """A fresh ring holding `records` (functions of the ring's boot -> payload), a gateway,
    an uplink with fast timers."""
    f = NorFlash(mptest.tmpdir() + "/uplink.img", 1024, 8, fresh=True)
    ring = open_store(f)
    for r in records:
        check(ring.append(r(ring.boot)) >= 0, "append")
    clock = DeviceClock()
    gw = Gateway(clock).start()
    c = client(gw.port, ack_timeout_ms=ack_timeout_ms, max_retransmit=2, szx=4)
    c._clock = clock
    up = uplink.Uplink(ring, c, clock, backoff_ms=200, backoff_cap_ms=1000, **kw)
    events = []
    up.on_event = lambda ev, a, b, c: events.append((ev, a, b, c))
    return ring, gw, up, events


async def done(gw, up):
    up.client.close()
    gw.stop()
    await asyncio.sleep_ms(0)
