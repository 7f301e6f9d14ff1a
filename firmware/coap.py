"""A CoAP (RFC 7252) client for the device: confirmable POST, Block1 (RFC 7959), one
exchange at a time (NSTART 1). Runs on every MicroPython port (the unix port in tests).

    c = Client("gw.local", 5683, DeviceClock())
    code = await c.post(b"t", record, n)   # a response code, or TIMEOUT / RESET / NETERR
    if code == CHANGED: body = c.payload()

Exchange rules (RFC 7252 §4), with its defaults ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5 and
MAX_RETRANSMIT 4 (constructor parameters, so tests can scale time down): each message is
CON with a fresh Message ID (random start, then +1, §4.4) and a fresh random 4-byte token
(§5.3.1); `random` is seeded from the hardware (or the OS) at boot on every port. A message
is retransmitted with the same MID after a timeout drawn from [ACK_TIMEOUT, ACK_TIMEOUT *
ACK_RANDOM_FACTOR], doubled after each retransmission, at most MAX_RETRANSMIT times (§4.2);
when the last timeout runs out, post() returns TIMEOUT. A response is the one carrying our
token: in an ACK with our MID (piggybacked), or in a CON (separate: we ACK it) or NON after
an empty ACK (§5.2.2). Anything else is ignored: duplicates, late ACKs of older MIDs, tokens
of older exchanges. A CON we cannot place is answered with RST, except a repeat of the last
separate response we ACKed, which gets its ACK again (our ACK was lost). A RST for our MID
returns RESET. Only datagrams from the connected peer are read.

Block1 (RFC 7959): a payload larger than the block size (16 << szx bytes) goes in blocks,
each its own CON exchange; block 0 carries Size1. A 2.31 Continue asks for the next block;
if its Block1 shows a smaller SZX, later blocks use that size (§2.5). A 4.13 whose Block1
asks for a smaller SZX restarts the transfer at that size; any other response ends the
transfer and is returned as is.

Waiting is asyncio-friendly and the same on every port: the socket is non-blocking, a
select.poll object says whether a datagram waits (ipoll, no allocation), and between polls
the task sleeps 1, 2, 4 ... up to `poll_ms` ms, never past the retransmission deadline.

Memory: one send buffer (block size + header room) and one receive buffer, allocated here.
A post allocates a few small objects (coroutine frames, memoryview slices of the payload
and the send buffer) and one bytes object per datagram received (MicroPython has no
recv_into, and a stream readinto would run datagrams together): about 700 bytes per
single-message post on the 64-bit unix port (t_coap_block measures it), nothing in
proportion to the payload. Timers use ticks_ms (small ints); DeviceClock.now_us() is read
twice per message for the clock estimate.
"""

import asyncio
import random
import select
import socket
import time

from micropython import const

# Response codes (class << 5 | detail) and the results that are not responses.
CONTINUE = const(0x5F)  # 2.31
CHANGED = const(0x44)  # 2.04
BAD_REQUEST = const(0x80)  # 4.00
REQUEST_ENTITY_INCOMPLETE = const(0x88)  # 4.08
REQUEST_ENTITY_TOO_LARGE = const(0x8D)  # 4.13
TOO_MANY_REQUESTS = const(0x9D)  # 4.29
SERVICE_UNAVAILABLE = const(0xA3)  # 5.03
TIMEOUT = const(-1)  # every retransmission went unanswered
RESET = const(-2)  # the peer answered our message with RST
NETERR = const(-3)  # no socket: the address did not resolve, or the socket failed

DEFAULT_MAX_AGE = const(60)  # seconds, when a response has no Max-Age (§5.10.5)

_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_POST = const(2)
_TKL = const(4)
_OPT_URI_PATH = const(11)
_OPT_CONTENT_FORMAT = const(12)
_OPT_MAX_AGE = const(14)
_OPT_BLOCK1 = const(27)
_OPT_SIZE1 = const(60)
_CF_CBOR = const(60)  # application/cbor
_PATH_MAX = const(32)  # bytes of one Uri-Path segment
# header 4 + token 4 + Uri-Path 2 + path + Content-Format 2 + Block1 5 + Size1 6 + marker 1
_HDR_ROOM = const(24 + _PATH_MAX)

# What a received datagram was, for the wait loop.
_NOTHING = const(0)
_EMPTY_ACK = const(1)
_RESPONSE = const(2)
_RESET = const(3)


def code_text(code):
    """0x96 -> "4.22"; the negative results by name. Allocates: for logs and tests."""
    if code == TIMEOUT:
        return "timeout"
    if code == RESET:
        return "reset"
    if code == NETERR:
        return "network error"
    d = code & 0x1F
    return str(code >> 5) + (".0" if d < 10 else ".") + str(d)


def _put_opt(buf, pos, delta, length):
    # option header: delta and length below 269 here, so at most one extension byte each
    d = 13 if delta >= 13 else delta
    n = 13 if length >= 13 else length
    buf[pos] = (d << 4) | n
    pos += 1
    if d == 13:
        buf[pos] = delta - 13
        pos += 1
    if n == 13:
        buf[pos] = length - 13
        pos += 1
    return pos


def _put_uint_opt(buf, pos, delta, v):
    # uint option values in the fewest bytes; 0 is the empty value (§3.2)
    n = 0
    x = v
    while x:
        n += 1
        x >>= 8
    pos = _put_opt(buf, pos, delta, n)
    while n:
        n -= 1
        buf[pos] = (v >> (8 * n)) & 0xFF
        pos += 1
    return pos


def _uint(buf, pos, n):
    v = 0
    for i in range(n):
        v = (v << 8) | buf[pos + i]
    return v


class Client:
    """One CoAP peer, one exchange at a time. Response fields after post(): `code`,
    `max_age` (seconds; DEFAULT_MAX_AGE when absent, `max_age_present` says which),
    `size1` and `block1` (-1 when absent), payload() (a view into the receive buffer, valid
    until the next post), and for the message that got the response `t_send` (DeviceClock µs
    of its first transmission), `t_recv` (of the response) and `retransmitted`."""

    def __init__(
        self,
        host,
        port,
        clock,
        ack_timeout_ms=2000,
        ack_random_factor=1.5,
        max_retransmit=4,
        szx=6,
        rx_size=320,
        poll_ms=20,
        response_timeout_ms=0,
    ):
        if not 0 <= szx <= 6:
            raise ValueError("szx must be 0..6 (16..1024-byte blocks)")
        self._host = host
        self._port = port
        self._clock = clock
        self.ack_timeout_ms = ack_timeout_ms
        self._spread_ms = int(ack_timeout_ms * (ack_random_factor - 1))
        self.max_retransmit = max_retransmit
        # A separate response may take as long as the gateway needs; give it the longest a
        # CON could take to get through (MAX_TRANSMIT_WAIT, §4.8.2) unless told otherwise.
        if response_timeout_ms <= 0:
            response_timeout_ms = int(
                ack_timeout_ms * ((2 << max_retransmit) - 1) * ack_random_factor
            )
        self.response_timeout_ms = response_timeout_ms
        self.poll_ms = poll_ms
        self.szx = szx
        self._tx = bytearray(_HDR_ROOM + (16 << szx))
        self._txv = memoryview(self._tx)
        self._rx = bytearray(rx_size)
        self._rxv = memoryview(self._rx)
        self._ctl = bytearray(4)  # empty ACK / RST
        self._tok = bytearray(_TKL)
        self._sock = None
        self._poll = select.poll()
        self._mid = random.getrandbits(16)
        self._cur = -1  # MID awaiting its ACK; -1 when none
        self._last_con = -1  # MID of the last separate response we ACKed
        self._busy = False
        # response of the last post()
        self.code = 0
        self.max_age = DEFAULT_MAX_AGE
        self.max_age_present = False
        self.size1 = -1
        self.block1 = -1
        self._pstart = 0
        self._plen = 0
        self.t_send = 0
        self.t_recv = 0
        self.retransmitted = False
        # counters, never reset
        self.messages = 0  # CON requests sent, not counting retransmissions
        self.retransmits = 0
        self.timeouts = 0
        self.resets = 0
        self.neterrors = 0  # send or receive calls that raised OSError
        self.ignored = 0  # datagrams that were not the awaited response
        self.bytes_sent = 0
        self.bytes_received = 0

    # --- socket --------------------------------------------------------------------

    def _open(self):
        if self._sock is not None:
            return True
        s = None
        try:
            addr = socket.getaddrinfo(self._host, self._port)[0][-1]
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.connect(addr)  # the kernel then delivers only the peer's datagrams
        except OSError:
            self.neterrors += 1
            if s is not None:
                s.close()
            return False
        self._sock = s
        self._poll = select.poll()
        self._poll.register(s, select.POLLIN)
        return True

    def close(self):
        if self._sock is not None:
            self._poll.unregister(self._sock)
            self._sock.close()
            self._sock = None

    def _send(self, n):
        s = self._sock
        if s is None:
            return
        try:
            s.send(self._txv[:n])
            self.bytes_sent += n
        except OSError:
            # unreachable, no buffers, link down: the datagram is lost, the timer goes on
            self.neterrors += 1

    def _send_ctl(self, typ, mid):
        c = self._ctl
        c[0] = 0x40 | (typ << 4)
        c[1] = 0
        c[2] = mid >> 8
        c[3] = mid & 0xFF
        s = self._sock
        if s is None:
            return
        try:
            s.send(c)
            self.bytes_sent += 4
        except OSError:
            self.neterrors += 1

    # --- request -------------------------------------------------------------------

    def payload(self):
        return self._rxv[self._pstart : self._pstart + self._plen]

    async def post(self, path, payload, n=-1):
        """POST the first n bytes of payload (all if n < 0) to the one Uri-Path segment
        `path` (bytes) as application/cbor. Returns the final response code, or TIMEOUT,
        RESET or NETERR."""
        if self._busy:
            raise RuntimeError("one exchange at a time")
        if len(path) > _PATH_MAX:
            raise ValueError("Uri-Path segment too long")
        if n < 0:
            n = len(payload)
        if not self._open():
            return NETERR
        self._busy = True
        mv = memoryview(payload)
        szx = self.szx
        blockwise = n > (16 << szx)
        off = 0
        try:
            while True:
                bs = 16 << szx
                if blockwise:
                    k = n - off if n - off < bs else bs
                    more = off + k < n
                    b1 = ((off >> (szx + 4)) << 4) | (8 if more else 0) | szx
                    size1 = n if off == 0 else -1
                else:
                    k = n
                    more = False
                    b1 = -1
                    size1 = -1
                code = await self._exchange(self._build(path, b1, size1, mv, off, k))
                if code < 0:
                    return code
                rb = self.block1
                if code == CONTINUE and blockwise and more:
                    if rb >= 0 and (rb & 7) < szx:
                        szx = rb & 7  # the server wants smaller blocks from here on (§2.5)
                    off += k
                    continue
                if (
                    code == REQUEST_ENTITY_TOO_LARGE
                    and off == 0
                    and rb >= 0
                    and (rb & 7) < szx
                    and (self.size1 < 0 or self.size1 >= n)
                ):
                    # The server prefers smaller blocks (§2.9.3): start over at its size.
                    # SZX only decreases, so this ends.
                    szx = rb & 7
                    blockwise = True
                    continue
                return code
        finally:
            self._busy = False
            self._cur = -1

    def _build(self, path, b1, size1, mv, off, k):
        """Write one CON POST into the send buffer; return its length."""
        tx = self._tx
        mid = (self._mid + 1) & 0xFFFF
        self._mid = mid
        tx[0] = 0x40 | (_CON << 4) | _TKL
        tx[1] = _POST
        tx[2] = mid >> 8
        tx[3] = mid & 0xFF
        tok = self._tok
        for i in range(_TKL):
            tok[i] = random.getrandbits(8)
            tx[4 + i] = tok[i]
        # options in ascending number, each as a delta from the previous (§3.1)
        pos = _put_opt(tx, 4 + _TKL, _OPT_URI_PATH, len(path))
        tx[pos : pos + len(path)] = path
        pos += len(path)
        pos = _put_uint_opt(tx, pos, _OPT_CONTENT_FORMAT - _OPT_URI_PATH, _CF_CBOR)
        last = _OPT_CONTENT_FORMAT
        if b1 >= 0:
            pos = _put_uint_opt(tx, pos, _OPT_BLOCK1 - last, b1)
            last = _OPT_BLOCK1
        if size1 >= 0:
            pos = _put_uint_opt(tx, pos, _OPT_SIZE1 - last, size1)
        if k:
            tx[pos] = 0xFF
            pos += 1
            tx[pos : pos + k] = mv[off : off + k]
            pos += k
        return pos

    async def _exchange(self, n):
        """Send the message in the send buffer until its response comes or time runs out."""
        self._cur = (self._tx[2] << 8) | self._tx[3]
        self.messages += 1
        self.t_send = self._clock.now_us()
        self.retransmitted = False
        timeout = self.ack_timeout_ms + (random.getrandbits(16) * self._spread_ms >> 16)
        tries = 0
        acked = False  # an empty ACK came: the response follows separately
        self._send(n)
        deadline = time.ticks_add(time.ticks_ms(), timeout)
        nap = 1
        while True:
            got = self._drain()
            if got == _RESPONSE:
                self.t_recv = self._clock.now_us()
                return self.code
            if got == _RESET:
                self.resets += 1
                return RESET
            if got == _EMPTY_ACK and not acked:
                acked = True
                self._cur = -1  # no more retransmissions; later copies of the ACK are noise
                deadline = time.ticks_add(time.ticks_ms(), self.response_timeout_ms)
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                if acked or tries >= self.max_retransmit:
                    self.timeouts += 1
                    return TIMEOUT
                tries += 1
                self.retransmits += 1
                self.retransmitted = True
                timeout *= 2
                self._send(n)
                deadline = time.ticks_add(time.ticks_ms(), timeout)
                nap = 1
                continue
            # poll quickly first (a loopback answer takes a millisecond or two), then less
            await asyncio.sleep_ms(nap if nap < left else left)
            if nap < self.poll_ms:
                nap *= 2

    def _readable(self):
        # ipoll yields nothing when nothing waits; it allocates nothing per call
        for _ in self._poll.ipoll(0):
            return True
        return False

    def _drain(self):
        """Read the datagrams waiting; stop at the first that settles the exchange."""
        s = self._sock
        if s is None:
            return _NOTHING
        rx = self._rx
        while self._readable():
            try:
                # recv, not readinto: a stream readinto keeps reading until the buffer is
                # full, which would run datagrams together
                data = s.recv(len(rx))
            except OSError:
                # e.g. ECONNREFUSED: an ICMP error for an earlier datagram, nothing to read
                self.neterrors += 1
                return _NOTHING
            n = len(data)
            rx[:n] = data
            data = None
            self.bytes_received += n
            got = self._classify(n)
            if got != _NOTHING:
                return got
            self.ignored += 1
        return _NOTHING

    def _classify(self, n):
        rx = self._rx
        if n < 4 or rx[0] >> 6 != 1:
            return _NOTHING  # not CoAP version 1: silently ignored (§3)
        typ = (rx[0] >> 4) & 3
        tkl = rx[0] & 0x0F
        code = rx[1]
        mid = (rx[2] << 8) | rx[3]
        if tkl > 8 or 4 + tkl > n:
            return self._reject(typ, mid)
        if code == 0:
            if n != 4:
                return self._reject(typ, mid)  # an empty message is exactly 4 bytes (§4.1)
            if mid == self._cur:
                if typ == _ACK:
                    return _EMPTY_ACK
                if typ == _RST:
                    return _RESET
            if typ == _CON:
                self._send_ctl(_RST, mid)  # a ping (§4.3)
            return _NOTHING
        if code < 0x40 or code >= 0xC0:
            return self._reject(typ, mid)  # a request or a reserved class: we serve nothing
        ours = tkl == _TKL
        if ours:
            tok = self._tok
            for i in range(_TKL):
                if rx[4 + i] != tok[i]:
                    ours = False
                    break
        if typ == _ACK:
            if not ours or mid != self._cur:
                return _NOTHING  # a late or duplicate ACK
        elif typ == _CON:
            if not ours:
                if mid == self._last_con:
                    self._send_ctl(_ACK, mid)  # our ACK of it was lost
                    return _NOTHING
                return self._reject(typ, mid)
        elif typ == _RST or not ours:
            return _NOTHING
        if not self._options(n, 4 + tkl, code):
            return self._reject(typ, mid)
        if typ == _CON:
            self._send_ctl(_ACK, mid)
            self._last_con = mid
        return _RESPONSE

    def _reject(self, typ, mid):
        if typ == _CON:
            self._send_ctl(_RST, mid)
        return _NOTHING

    def _options(self, n, pos, code):
        """Parse the response's options and payload into the response fields. False (and
        nothing changed) if the message is malformed or has an unknown critical option."""
        rx = self._rx
        num = 0
        max_age = -1
        size1 = -1
        block1 = -1
        pstart = n
        while pos < n:
            b = rx[pos]
            pos += 1
            if b == 0xFF:
                if pos == n:
                    return False  # a marker with no payload is a format error (§3)
                pstart = pos
                break
            d = b >> 4
            ln = b & 0x0F
            if d == 15 or ln == 15:
                return False
            if d == 13:
                if pos >= n:
                    return False
                d = rx[pos] + 13
                pos += 1
            elif d == 14:
                if pos + 1 >= n:
                    return False
                d = ((rx[pos] << 8) | rx[pos + 1]) + 269
                pos += 2
            if ln == 13:
                if pos >= n:
                    return False
                ln = rx[pos] + 13
                pos += 1
            elif ln == 14:
                if pos + 1 >= n:
                    return False
                ln = ((rx[pos] << 8) | rx[pos + 1]) + 269
                pos += 2
            if pos + ln > n:
                return False
            num += d
            if num == _OPT_MAX_AGE:
                if ln > 4:
                    return False
                max_age = _uint(rx, pos, ln)
            elif num == _OPT_BLOCK1:
                if ln > 3:
                    return False
                block1 = _uint(rx, pos, ln)
            elif num == _OPT_SIZE1:
                if ln > 4:
                    return False
                size1 = _uint(rx, pos, ln)
            elif num & 1 and num != _OPT_URI_PATH:
                return False  # critical and unknown to us (§5.4.1); Uri-Path is not sent back
            pos += ln
        self.code = code
        self.max_age_present = max_age >= 0
        self.max_age = max_age if max_age >= 0 else DEFAULT_MAX_AGE
        self.size1 = size1
        self.block1 = block1
        self._pstart = pstart
        self._plen = n - pstart
        return True
