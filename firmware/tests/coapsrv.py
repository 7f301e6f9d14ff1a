"""A scripted CoAP peer on loopback for the MicroPython client tests (t_coap, t_uplink):
it runs in the test's own asyncio loop, records every datagram it gets with its arrival
time, and answers through a handler the test supplies. Test code: allocates freely."""

import asyncio
import random
import socket
import time

import coap
from clock import DeviceClock

CON = 0
NON = 1
ACK = 2
RST = 3


def ubytes(v):
    """A uint option value in the fewest bytes."""
    n = 0
    while v >> (8 * n):
        n += 1
    return bytes((v >> (8 * (n - 1 - i))) & 0xFF for i in range(n))


def msg(typ, code, mid, token=b"", opts=(), payload=b""):
    """Encode a message; opts are (number, value bytes), sorted here."""
    out = bytearray([0x40 | (typ << 4) | len(token), code, mid >> 8, mid & 0xFF])
    out += token
    last = 0
    for num, val in sorted(opts, key=lambda o: o[0]):
        d = num - last
        last = num
        ln = len(val)
        ext = bytearray()
        dn = d
        if d >= 269:
            dn = 14
            ext += bytes([(d - 269) >> 8, (d - 269) & 0xFF])
        elif d >= 13:
            dn = 13
            ext.append(d - 13)
        lnn = ln
        if ln >= 13:
            lnn = 13
            ext.append(ln - 13)
        out.append((dn << 4) | lnn)
        out += ext
        out += val
    if payload:
        out.append(0xFF)
        out += payload
    return bytes(out)


class Msg:
    """A decoded message (the test side's own parser, independent of coap.py's)."""

    def __init__(self, b):
        self.typ = (b[0] >> 4) & 3
        tkl = b[0] & 0x0F
        self.code = b[1]
        self.mid = (b[2] << 8) | b[3]
        self.token = bytes(b[4 : 4 + tkl])
        self.opts = []
        self.payload = b""
        pos = 4 + tkl
        num = 0
        while pos < len(b):
            if b[pos] == 0xFF:
                self.payload = bytes(b[pos + 1 :])
                break
            d = b[pos] >> 4
            ln = b[pos] & 0x0F
            pos += 1
            if d == 13:
                d = b[pos] + 13
                pos += 1
            elif d == 14:
                d = ((b[pos] << 8) | b[pos + 1]) + 269
                pos += 2
            if ln == 13:
                ln = b[pos] + 13
                pos += 1
            elif ln == 14:
                ln = ((b[pos] << 8) | b[pos + 1]) + 269
                pos += 2
            num += d
            self.opts.append((num, bytes(b[pos : pos + ln])))
            pos += ln

    def opt(self, num):
        for n, v in self.opts:
            if n == num:
                return v
        return None

    def uint(self, num):
        v = self.opt(num)
        if v is None:
            return -1
        x = 0
        for c in v:
            x = (x << 8) | c
        return x


class Peer:
    """Binds a free loopback port (the unix port cannot report an ephemeral one, so it
    tries random ports). `handler(peer, m, t_ms)` is called for each datagram received."""

    def __init__(self, handler=None, mtu=1200):
        self.mtu = mtu
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(100):
            port = 20000 + random.getrandbits(15)
            try:
                self.s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
                break
            except OSError:
                continue
        else:
            raise OSError("no free port")
        self.port = port
        self.s.setblocking(False)
        self.handler = handler
        self.got = []  # (ticks_ms, Msg) of every datagram, while `keep`
        self.keep = True
        self.addr = None
        self.sent = 0
        self._task = None
        self.tasks = []

    def start(self):
        self._task = asyncio.create_task(self._loop())
        return self

    def stop(self):
        # cancelled tasks linger in MicroPython's one task queue until it runs again: drop
        # what they hold now, so the next test has the heap
        if self._task is not None:
            self._task.cancel()
        for t in self.tasks:
            t.cancel()
        self.tasks = []
        self.got = []
        self.handler = None
        self.s.close()

    async def _loop(self):
        while True:
            try:
                data, addr = self.s.recvfrom(self.mtu)
            except OSError:
                await asyncio.sleep_ms(1)
                continue
            self.addr = addr
            t = time.ticks_ms()
            m = Msg(data)
            if self.keep:
                self.got.append((t, m))
            if self.handler is not None:
                self.handler(self, m, t)

    def send(self, data):
        self.sent += 1
        try:
            self.s.sendto(data, self.addr)
        except OSError:
            pass  # stopped: a reply scheduled with later() has nowhere to go

    def later(self, ms, data):
        self.tasks.append(asyncio.create_task(self._later(ms, data)))

    async def _later(self, ms, data):
        await asyncio.sleep_ms(ms)
        self.send(data)

    def requests(self):
        return [(t, m) for t, m in self.got if m.code and m.code < 32]


def client(port=5683, **kw):
    return coap.Client("127.0.0.1", port, DeviceClock(), **kw)


def run(coro):
    return asyncio.run(coro)


def ack_for(m, code=0x44, opts=(), payload=b"\xa0"):
    """A piggybacked answer to request m."""
    return msg(ACK, code, m.mid, m.token, opts, payload)


async def with_peer(handler, body, **kw):
    """body(client, peer) with a started Peer and a Client aimed at it."""
    peer = Peer(handler).start()
    c = client(peer.port, **kw)
    try:
        return await body(c, peer)
    finally:
        c.close()
        peer.stop()
        await asyncio.sleep_ms(0)  # the cancelled tasks end now
