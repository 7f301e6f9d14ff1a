"""The uplink: ring records to the gateway, oldest first, each released only on its ack.

A ring record's payload is one complete telemetry batch, CBOR as it goes on the wire
(protocol/telemetry.cddl). The rules for each answer to `POST /t` (UPLINK.md has the state
machine):

- 2.04 whose telemetry-ack has the batch's boot and a high-seq >= the batch's last reading
  seq: release the record from the ring, go on to the next. Any other 2.xx, or an ack that
  does not cover the batch: a failed exchange.
- 5.03: wait Max-Age seconds (60 when absent) plus up to 10 % jitter, send the same again.
- 4.29: wait Max-Age if given, else the exponential backoff; send the same again.
- 4.08 (a Block1 transfer the gateway lost), and 4.01 / 4.03 / 4.04 / 4.05 (about the
  resource or our credentials, so every record would get them: a misconfigured gateway must
  not empty the ring): a failed exchange, not the record's fault.
- every other 4.xx (4.00, 4.13, 4.15, 4.22, ...): the record is poison: released and never
  sent again (quarantined), counted.
- timeout, RST, network error, other 5.xx: a failed exchange: exponential backoff with
  jitter, capped, then the same record again.

Invariant: a record is released only after an ack that covers it, or a 4.xx that condemns
it. A failure releases nothing, and a reset re-reads from the oldest unreleased record, so
the gateway sees the same (boot, seq) again and de-duplicates it.

The clock estimate: every reply with a gateway time gives wall = device + offset within
(t_recv - t_send) / 2 + 1 ms, where t_send is the first transmission of the message that
got the reply (so the gateway read its clock between the two, retransmissions or not). The
best estimate is kept; its uncertainty grows by `drift_ppm` of the device time elapsed
since, so a newer, tighter sample replaces it.
"""

import asyncio
import random

import coap
from cbor import ARRAY, MAP, TEXT, UINT, CborError, Decoder
from micropython import const
from ring import TOO_BIG

# events for `on_event(event, a, b, c)`, a test and logging hook
ACKED = const(1)  # a: batch boot, b: batch seq, c: the batch's last seq
RELEASED = const(2)  # a: ring boot, b: ring seq, c: batch seq
QUARANTINED = const(3)  # a: ring boot, b: ring seq, c: readings; reason in last_error
BACKOFF = const(4)  # a: response code (or coap.TIMEOUT ...), b: wait ms, c: 0
CLOCK = const(5)  # a: offset µs, b: uncertainty µs, c: device µs of the sample

# 4.xx details that say nothing against the record: 4.01 4.03 4.04 4.05 4.08 (4.29 above)
_NOT_POISON = const((1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8))
_GRANULARITY_US = const(1000)  # the gateway's clock, and its reading, to the millisecond
_MS = const(1000)


def _skip(d):
    # one whole item (a container with everything in it)
    kind = d.next()
    if kind == ARRAY:
        for _ in range(d.arg):
            _skip(d)
    elif kind == MAP:
        for _ in range(2 * d.arg):
            _skip(d)


class Uplink:
    """Sends `ring`'s records through `client` (a coap.Client; this object owns its one
    exchange). Public: run(), step(), wake(), send_health(payload), clock_estimate(), the
    counters below, `retransmits` (the client's) and `on_event`. Times in ms."""

    def __init__(
        self,
        ring,
        client,
        clock,
        path=b"t",
        health_path=b"h",
        backoff_ms=1000,
        backoff_cap_ms=60000,
        idle_ms=5000,
        drift_ppm=100,
        record_bytes=1024,
    ):
        self._ring = ring
        self.client = client
        self._clock = clock
        self._path = path
        self._hpath = health_path
        self.backoff_ms = backoff_ms
        self.backoff_cap_ms = backoff_cap_ms
        self.idle_ms = idle_ms
        self.drift_ppm = drift_ppm
        # the record in flight; records are batches of at most record_bytes (agent.py)
        self._buf = bytearray(min(record_bytes, ring.paymax))
        self._n = 0  # its length; 0 = none read yet
        self._rb = 0  # its ring identity
        self._rs = 0
        self.boot = 0  # its batch fields
        self.seq = 0
        self.readings = 0
        # A valid batch has at most 7 + 3 map keys open at once (batch map, one series map)
        # and a reply 4: a smaller key table than the default 64 saves about 1 KB of heap.
        self._dec = Decoder(max_keys=16)
        self._lock = asyncio.Lock()  # one exchange in flight: records and health share it
        self._wake = asyncio.Event()
        self._fails = 0  # consecutive failed exchanges, for the exponential backoff
        # clock estimate: none until _cunc >= 0
        self._coff = 0
        self._cunc = -1
        self._cat = 0  # device µs of the sample
        # counters, this boot
        self.acked = 0  # records released on an ack
        self.acked_readings = 0
        self.quarantined = 0  # readings released after a 4.xx (health-report key 10)
        self.quarantined_records = 0
        self.backoffs = 0  # waits the gateway asked for (5.03, 4.29)
        self.failures = 0  # failed exchanges: timeout, RST, network, other 5.xx, bad ack
        self.last_error = ""
        self.last_code = 0
        self.on_event = None
        # fields of the last reply read by _reply()
        self._rboot = -1
        self._rhigh = -1
        self._rtime = -1
        self._rreason = -1
        self._rlen = 0

    @property
    def retransmits(self):
        return self.client.retransmits

    def wake(self):
        """A record was appended: an idle uplink sends at once."""
        self._wake.set()

    def clock_estimate(self):
        """None, or (offset_us, uncertainty_us) with wall µs = device µs + offset."""
        if self._cunc < 0:
            return None
        return (self._coff, self._aged(self._clock.now_us()))

    def _aged(self, now):
        return self._cunc + (now - self._cat) * self.drift_ppm // 1000000

    def _sample(self, gw_us):
        c = self.client
        ts = c.t_send
        tr = c.t_recv
        unc = (tr - ts + 1) // 2 + _GRANULARITY_US
        if self._cunc < 0 or unc <= self._aged(tr):
            self._coff = gw_us - (ts + tr) // 2
            self._cunc = unc
            self._cat = tr
            self._event(CLOCK, self._coff, unc, tr)

    def _event(self, ev, a, b, c):
        if self.on_event is not None:
            self.on_event(ev, a, b, c)

    # --- reading replies and records -------------------------------------------------

    def _reply(self, time_key):
        """Walk a reply body (a map with small uint keys): keys 1 and 2 as a telemetry-ack's
        boot and high-seq (_rboot, _rhigh), key 2 as an error body's reason when it is text
        (_rreason, _rlen: its place in the payload), and key `time_key` as the gateway time,
        which feeds the clock estimate. False if the body is not such a map."""
        d = self._dec
        body = self.client.payload()
        self._rboot = -1
        self._rhigh = -1
        self._rtime = -1
        self._rreason = -1
        try:
            d.start(body)
            if d.next() != MAP:
                return False
            for _ in range(d.arg):
                if d.next() != UINT:
                    return False
                k = d.arg
                kind = d.next()
                if kind == UINT:
                    if k == 1:
                        self._rboot = d.arg
                    elif k == 2:
                        self._rhigh = d.arg
                    if k == time_key:
                        self._rtime = d.arg
                elif kind == TEXT and k == 2:
                    self._rreason = d.at
                    self._rlen = d.arg
                elif kind in (ARRAY, MAP):
                    for _ in range(d.arg if kind == ARRAY else 2 * d.arg):
                        _skip(d)
            d.finish()
        except CborError:
            return False
        if self._rtime >= 0:
            self._sample(self._rtime)
        return True

    def _summary(self, n):
        """Batch boot, seq and reading count of the record in the buffer (False if it is not
        a batch we can read: quarantined unsent)."""
        d = self._dec
        boot = -1
        seq = -1
        total = 0
        try:
            d.start(self._buf, n)
            if d.next() != MAP:
                return False
            for _ in range(d.arg):
                if d.next() != UINT:
                    return False
                k = d.arg
                if k == 2 or k == 3:
                    if d.next() != UINT:
                        return False
                    if k == 2:
                        boot = d.arg
                    else:
                        seq = d.arg
                elif k == 6:
                    if d.next() != ARRAY:
                        return False
                    for _ in range(d.arg):
                        if d.next() != MAP:
                            return False
                        for _ in range(d.arg):
                            if d.next() != UINT:
                                return False
                            sk = d.arg
                            kind = d.next()
                            if sk == 1 and kind == ARRAY:
                                total += d.arg  # plain series: the ts array's length
                            elif sk == 4 and kind == UINT:
                                total += d.arg  # block series: its count
                            if kind == ARRAY:
                                for _ in range(d.arg):
                                    _skip(d)
                            elif kind == MAP:
                                for _ in range(2 * d.arg):
                                    _skip(d)
                else:
                    _skip(d)
            d.finish()
        except CborError:
            return False
        if boot < 0 or seq < 0 or total < 1:
            return False
        self.boot = boot
        self.seq = seq
        self.readings = total
        return True

    # --- the loop ------------------------------------------------------------------------

    async def run(self):
        """Send forever. Waits for wake() (or idle_ms) when the ring has nothing new."""
        while True:
            try:
                wait = await self.step()
            except Exception as e:  # a flash error must not end the uplink; it is reported
                self.last_error = repr(e)
                self.failures += 1
                wait = self._exp_backoff()
            if wait > 0:
                await asyncio.sleep_ms(wait)
            elif wait < 0:
                try:
                    await asyncio.wait_for_ms(self._wake.wait(), self.idle_ms)
                except asyncio.TimeoutError:  # noqa: UP041 - MicroPython has no builtin one
                    pass

    async def step(self):
        """One attempt at the oldest unreleased record. Returns ms to wait before the next
        step, 0 for at once, -1 when the ring had nothing to send (wait for wake())."""
        ring = self._ring
        if self._n == 0:
            self._wake.clear()  # before read(): a wake() after it is not lost
            n = ring.read(self._buf)
            if n == TOO_BIG:
                self._rb = ring.rb
                self._rs = ring.rs
                self.readings = 0
                self._quarantine("record larger than the uplink's buffer")
                return 0
            if n < 0:
                return -1
            self._n = n
            self._rb = ring.rb
            self._rs = ring.rs
            if not self._summary(n):
                self.readings = 0
                self._quarantine("not a telemetry batch")
                return 0
        # acquire/release, not `async with` (two coroutine objects fewer per record)
        await self._lock.acquire()
        try:
            code = await self.client.post(self._path, self._buf, self._n)
        finally:
            self._lock.release()
        self.last_code = code
        if code == coap.CHANGED:
            if (
                self._reply(3)
                and self._rboot == self.boot
                and self._rhigh >= self.seq + self.readings - 1
            ):
                self._fails = 0
                self._event(ACKED, self.boot, self.seq, self.seq + self.readings - 1)
                ring.release(self._rb, self._rs)
                self.acked += 1
                self.acked_readings += self.readings
                self._n = 0
                self._event(RELEASED, self._rb, self._rs, self.seq)
                return 0
            self.last_error = "2.04 without an ack of this batch"
            return self._failed(code)
        self._rreason = -1
        if code > 0:
            self._reply(3)
        if code == coap.SERVICE_UNAVAILABLE:
            self._fails = 0
            return self._backoff(code, self._max_age_ms())
        if code == coap.TOO_MANY_REQUESTS:
            ms = self._max_age_ms() if self.client.max_age_present else self._exp_backoff()
            return self._backoff(code, ms)
        if code >> 5 == 4 and not _NOT_POISON & (1 << (code & 0x1F)):
            self._quarantine(None)
            return 0
        if code < 0:
            self.last_error = coap.code_text(code)
        else:
            self._set_reason(code)
        return self._failed(code)

    def _max_age_ms(self):
        ms = self.client.max_age * _MS
        return ms + (random.getrandbits(16) * (ms // 10) >> 16)  # at most 10 % more

    def _exp_backoff(self):
        # equal jitter: half the step for sure, half at random; the step doubles per failure
        self._fails += 1
        step = self.backoff_ms
        k = self._fails
        while k > 1 and step < self.backoff_cap_ms:
            step *= 2
            k -= 1
        if step > self.backoff_cap_ms:
            step = self.backoff_cap_ms
        half = step // 2
        return half + (random.getrandbits(16) * (step - half) >> 16)

    def _backoff(self, code, ms):
        self.backoffs += 1
        self._set_reason(code)
        self._event(BACKOFF, code, ms, 0)
        return ms

    def _failed(self, code):
        self.failures += 1
        ms = self._exp_backoff()
        self._event(BACKOFF, code, ms, 0)
        return ms

    def _set_reason(self, code):
        # "4.22 <the error body's reason>" (error paths only: allocates the text)
        text = coap.code_text(code)
        r = self._rreason
        if code > 0 and r >= 0:
            text += " " + bytes(self.client.payload()[r : r + self._rlen]).decode()
        self.last_error = text

    def _quarantine(self, reason):
        if reason is None:
            self._set_reason(self.last_code)
        else:
            self.last_error = reason
        self._ring.release(self._rb, self._rs)
        self.quarantined += self.readings
        self.quarantined_records += 1
        self._n = 0
        self._fails = 0
        self._event(QUARANTINED, self._rb, self._rs, self.readings)

    # --- health ----------------------------------------------------------------------------

    async def send_health(self, payload):
        """POST a health report to /h: one exchange (with its retransmissions), no retry.
        True on 2.04. Its health-ack's gateway time feeds the clock estimate."""
        await self._lock.acquire()
        try:
            code = await self.client.post(self._hpath, payload)
        finally:
            self._lock.release()
        if code > 0:
            self._reply(1 if code == coap.CHANGED else 3)
        return code == coap.CHANGED
