"""Shared by the ring tests: deterministic payloads and a model of the live records.

A record's payload is a pure function of its identity, so a test can check every byte it
reads back without keeping copies: `fill` writes it, `intact` checks it.
"""

from array import array

PAYMAX_TEST = 48


# Identities packed in 32 bits for the model's arrays: boot < 2**14, seq < 2**18 in tests.
def key(b, s):
    if b >= 1 << 14 or s >= 1 << 18:
        raise OverflowError("identity too large for the test model")
    return (b << 18) | s


def kb(k):
    return k >> 18


def ks(k):
    return k & 0x3FFFF


class Payloads:
    def __init__(self, maxlen=PAYMAX_TEST):
        self.maxlen = maxlen
        self.buf = bytearray(maxlen)
        self.views = None  # exact-length views for append, made on first fill()

    def length(self, b, s):
        return 1 + (b * 7 + s * 13) % self.maxlen

    def fill(self, b, s):
        n = self.length(b, s)
        buf = self.buf
        if self.views is None:
            mv = memoryview(buf)
            self.views = [mv[:k] for k in range(self.maxlen + 1)]
        for i in range(n):
            buf[i] = (b * 31 + s * 7 + i * 11) & 0xFF
        return self.views[n]

    def intact(self, buf, n, b, s):
        if n != self.length(b, s):
            return False
        for i in range(n):
            if buf[i] != (b * 31 + s * 7 + i * 11) & 0xFF:
                return False
        return True


class Model:
    """FIFO of the identities the ring has accepted and not yet released or dropped."""

    def __init__(self, cap):
        self.k = array("I", bytearray(4 * cap))  # no list of cap ints on the way
        self.cap = cap
        self.h = 0
        self.n = 0
        self.wk = 0  # newest released (or dropped) key

    def push(self, k):
        if self.n == self.cap:
            raise OverflowError("model capacity")
        self.k[(self.h + self.n) % self.cap] = k
        self.n += 1

    def get(self, i):
        return self.k[(self.h + i) % self.cap]

    def pop(self, m):
        if m > self.n:
            raise ValueError("model pop beyond its contents")
        if m:
            self.wk = self.get(m - 1)
        self.h = (self.h + m) % self.cap
        self.n -= m

    def count_le(self, k):
        i = 0
        while i < self.n and self.get(i) <= k:
            i += 1
        return i


class Mismatch(Exception):
    pass


def read_all(ring, pay, exp_get, exp_n, i_max, extra):
    """Read every live record of a freshly recovered ring and check it against an expected
    sequence: the records must be exactly exp[i:] for some i <= i_max, optionally followed
    by the one identity `extra` (-1: none allowed), every payload intact, and ring.live must
    agree. Returns i * 2 + (1 if `extra` was read)."""
    buf = pay.buf
    ring.rewind()
    t = -1  # index in exp of the next expected record; -1 until the first read anchors it
    seen_extra = 0
    count = 0
    while True:
        n = ring.read(buf)
        if n < 0:
            break
        b = ring.rb
        s = ring.rs
        k = key(b, s)
        count += 1
        if not pay.intact(buf, n, b, s):
            raise Mismatch(f"corrupt payload returned for {b}:{s}")
        if seen_extra:
            raise Mismatch(f"record {b}:{s} after the in-flight one")
        if t < 0:
            t = 0
            while t < exp_n and exp_get(t) != k:
                t += 1
        if t < exp_n:
            if exp_get(t) != k:
                e = exp_get(t)
                raise Mismatch(f"expected {kb(e)}:{ks(e)}, read {b}:{s}")
            t += 1
        elif k == extra:
            seen_extra = 1
        else:
            raise Mismatch(f"unexpected record {b}:{s} (released, dropped or never written)")
    if t < 0:
        t = exp_n
    first = t - (count - seen_extra)
    if t != exp_n:
        e = exp_get(t)
        raise Mismatch(f"accepted record {kb(e)}:{ks(e)} missing (and {exp_n - t - 1} after it)")
    if first > i_max:
        raise Mismatch(f"{first} oldest live records lost, at most {i_max} may be")
    if ring.live != count:
        raise Mismatch(f"ring.live {ring.live} but {count} records readable")
    return first * 2 + seen_extra
