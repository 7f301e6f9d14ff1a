"""A power-loss-safe FIFO of records on raw NOR flash sectors.

The on-flash format, its invariants and the recovery procedure are in RING.md; this
module is its implementation. Identities: every record carries (boot, seq); `boot` comes
from metalog.Meta.new_boot() and `seq` counts from 0 within a boot, so identities strictly
increase in append order. That order is the ring's truth: a record is released iff its
identity is <= the watermark W, and a reader returns only records whose identity is greater
than the last one it returned, which also hides stale copies and duplicates.

Hot path: `append` allocates nothing (tests/t_alloc.py measures it): header packed into a
preallocated buffer, CRC-32 over preallocated views and the caller's buffer, read-back
through fixed chunk views. Other calls may allocate on error paths only.
"""

import struct
from array import array
from binascii import crc32

from micropython import const

_SHDR = const(16)  # sector header bytes; the first record starts here
_RHDR = const(16)  # record header bytes
_SMAGIC = const(0x31535452)  # b"RTS1" little-endian
_KIND = const(0xD1)  # record kind byte, format version 1
_CH = const(32)  # largest chunk for CRC, checks and copies; a power of two
_CHLOG = const(5)

TOO_BIG = const(-2)  # read(): the record does not fit the caller's buffer
DROP_OLDEST = const(0)
REFUSE_NEW = const(1)


class RingError(Exception):
    pass


def _u32(b, i):
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)


def _gt(b1, s1, b2, s2):
    """(b1, s1) > (b2, s2): identities compare boot first, then seq."""
    return b1 > b2 or (b1 == b2 and s1 > s2)


class Ring:
    def __init__(self, flash, meta, first_sector, count, policy=DROP_OLDEST):
        if count < 2 or first_sector < 0 or first_sector + count > flash.sector_count:
            raise ValueError("ring needs at least two sectors inside the flash")
        if policy not in (DROP_OLDEST, REFUSE_NEW):
            raise ValueError("policy must be DROP_OLDEST or REFUSE_NEW")
        ss = flash.sector_size
        if ss % _CH or ss > 65536:
            raise ValueError("sector size must be a multiple of 32 and at most 64 KiB")
        self._f = flash
        self._meta = meta
        self._ss = ss
        self._first = first_sector
        self._n = count
        self.policy = policy
        self.paymax = ss - _SHDR - _RHDR  # a record must fit in an empty sector
        if self.paymax > 0xFFFF:
            self.paymax = 0xFFFF
        n = count
        self._sseq = array("I", [0] * n)  # sector sequence number; 0 = not a valid sector
        self._lb = array("I", [0] * n)  # identity of the last valid record; boot 0 = none
        self._ls = array("I", [0] * n)
        self._ord = array("h", [0] * n)  # valid sectors, oldest (lowest sseq) first
        self._nord = 0
        self._bad = bytearray(n)  # 1 = a program or erase failed here since boot
        self._h = bytearray(_RHDR)  # record / sector header being written
        self._r = bytearray(_RHDR)  # header being read
        self._hcrc = memoryview(self._h)[1:12]
        self._rcrc = memoryview(self._r)[1:12]
        self._h12 = memoryview(self._h)[:12]
        self._r12 = memoryview(self._r)[:12]
        self._zero = b"\x00"
        self._one = bytearray(1)
        c = bytearray(_CH)
        self._c = c
        mv = memoryview(c)
        # views of 1, 2, 4 .. _CH bytes: any length is read as a few exact-length pieces
        self._views = [mv[: 1 << i] for i in range(_CHLOG + 1)]
        # writer
        self._head = -1  # sector being appended to; -1 = none yet
        self._off = ss  # append offset in the head sector; ss = closed, open a new one
        self._maxseq = 0
        self.boot = 0  # 0 until start(): no record may be written before a boot is taken
        self.seq = 0  # next seq to assign
        self.lastb = 0  # newest identity on flash
        self.lasts = 0
        # watermark: every identity <= (wb, ws) is released; _wsec holds its flag (-1: meta)
        self.wb = 0
        self.ws = 0
        self._wsec = -1
        # tail: a position at or before the oldest live record; -1 = start of the oldest sector
        self._ts = -1
        self._to = _SHDR
        # reader cursor and the identity it last returned
        self._cs = -1
        self._co = _SHDR
        self.rb = 0
        self.rs = 0
        # walk: a position (_ks, _ko) and a floor identity (_kb, _kq); see _peek
        self._ks = -1
        self._ko = _SHDR
        self._pb = 0
        self._ps = 0
        self._pn = 0
        self._pflag = 0
        self._pnext = 0
        self._kb = 0
        self._kq = 0
        # counters, never reset while running
        self.live = 0  # accepted, not released, not dropped
        self.appended = 0
        self.payload_bytes = 0
        self.dropped = 0  # live records discarded by DROP_OLDEST overflow
        self.refused = 0  # appends refused by REFUSE_NEW overflow
        self.released = 0
        self.bad_events = 0  # failed or unverifiable programs / erases
        self.dups = 0  # duplicate or out-of-order copies skipped at recovery
        self.max_boot = 0  # highest boot found in a record at recovery

    # --- flash helpers -------------------------------------------------------------

    def _addr(self, s, off):
        return (self._first + s) * self._ss + off

    def _crc_region(self, addr, n, crc):
        views = self._views
        f = self._f
        k = _CH
        i = _CHLOG
        while n > 0:
            while k > n:
                k >>= 1
                i -= 1
            v = views[i]
            f.read(addr, v)
            crc = crc32(v, crc)
            addr += k
            n -= k
        return crc

    def _blank(self, addr, n):
        c = self._c
        views = self._views
        k = _CH
        i = _CHLOG
        while n > 0:
            while k > n:
                k >>= 1
                i -= 1
            self._f.read(addr, views[i])
            for j in range(k):
                if c[j] != 0xFF:
                    return False
            addr += k
            n -= k
        return True

    def _sector_seq(self, s):
        """Sequence number from a valid sector header, else 0."""
        r = self._r
        self._f.read(self._addr(s, 0), r)
        if _u32(r, 0) != _SMAGIC or _u32(r, 8) != 0xFFFFFFFF:
            return 0
        if crc32(self._r12) != _u32(r, 12):
            return 0
        return _u32(r, 4)

    def _hdr(self, s, off):
        """Classify the bytes at (s, off): 1 valid record (fields in _pb/_ps/_pn/_pflag,
        next offset in _pnext), 0 blank header (end of data), -1 anything else (torn,
        corrupt or no room for a header)."""
        ss = self._ss
        if off + _RHDR > ss:
            return -1
        r = self._r
        addr = self._addr(s, off)
        self._f.read(addr, r)
        blank = True
        for i in range(_RHDR):
            if r[i] != 0xFF:
                blank = False
                break
        if blank:
            return 0
        n = r[2] | (r[3] << 8)
        if r[1] != _KIND or n < 1 or n > self.paymax or off + _RHDR + n > ss:
            return -1
        crc = self._crc_region(addr + _RHDR, n, crc32(self._rcrc))
        if crc != _u32(r, 12):
            return -1
        self._pb = _u32(r, 4)
        self._ps = _u32(r, 8)
        self._pn = n
        self._pflag = r[0]
        self._pnext = (off + _RHDR + n + 3) & ~3
        return 1

    # --- order of sectors ----------------------------------------------------------

    def _ord_index(self, s):
        o = self._ord
        for i in range(self._nord):
            if o[i] == s:
                return i
        return -1

    def _ord_remove(self, s):
        i = self._ord_index(s)
        if i < 0:
            return
        o = self._ord
        while i + 1 < self._nord:
            o[i] = o[i + 1]
            i += 1
        self._nord -= 1

    def _ord_after(self, s):
        """The sector after s in ring order, -1 if s is the newest (or not in the ring)."""
        i = self._ord_index(s)
        if i < 0 or i + 1 >= self._nord:
            return -1
        return self._ord[i + 1]

    # --- recovery ------------------------------------------------------------------

    def recover(self):
        """Rebuild the RAM state from flash (after meta.load()). Reads only: a reset in
        here changes nothing, and so does running it twice."""
        meta = self._meta
        n = self._n
        ss = self._ss
        sseq = self._sseq
        o = self._ord
        self._nord = 0
        self._maxseq = 0
        for s in range(n):
            q = self._sector_seq(s)
            sseq[s] = q
            self._lb[s] = 0
            self._ls[s] = 0
            if q == 0:
                continue
            if q > self._maxseq:
                self._maxseq = q
            # insertion by sequence number: ring order is write order
            i = self._nord
            while i > 0 and sseq[o[i - 1]] > q:
                o[i] = o[i - 1]
                i -= 1
            o[i] = s
            self._nord += 1
        mb = meta.mark_boot
        ms = meta.mark_seq
        wb = mb
        ws = ms
        wsec = -1
        pb = 0  # last identity accepted by the scan (identities must strictly increase)
        ps = 0
        total = 0
        le_meta = 0  # records with identity <= the meta mark
        le_flag = 0  # records up to and including the newest flagged one
        ts_m = -1  # position after the last record <= meta mark
        to_m = _SHDR
        ts_f = -1
        to_f = _SHDR
        self._head = o[self._nord - 1] if self._nord else -1
        self._off = ss
        for i in range(self._nord):
            s = o[i]
            off = _SHDR
            st = 0
            while True:
                st = self._hdr(s, off)
                if st != 1:
                    break
                b = self._pb
                q = self._ps
                if _gt(b, q, pb, ps):
                    pb = b
                    ps = q
                    total += 1
                    self._lb[s] = b
                    self._ls[s] = q
                    if not _gt(b, q, mb, ms):
                        le_meta = total
                        ts_m = s
                        to_m = self._pnext
                    if self._pflag != 0xFF and _gt(b, q, wb, ws):
                        wb = b
                        ws = q
                        wsec = s
                        le_flag = total
                        ts_f = s
                        to_f = self._pnext
                else:
                    self.dups += 1
                off = self._pnext
            if s == self._head and st == 0 and self._blank(self._addr(s, off), ss - off):
                # Clean end: everything after `off` is erased, so appends may continue here.
                # Any torn write in this sector would have left a non-blank byte, and then
                # the sector stays closed.
                self._off = off
        self.wb = wb
        self.ws = ws
        self._wsec = wsec
        if wsec >= 0:
            self.live = total - le_flag
            self._ts = ts_f
            self._to = to_f
        else:
            self.live = total - le_meta
            self._ts = ts_m
            self._to = to_m
        self.lastb = pb
        self.lasts = ps
        self.max_boot = pb
        self.boot = 0
        self.seq = 0
        self.rewind()

    def start(self, boot):
        """Begin appending with a boot number taken from Meta.new_boot()."""
        if boot <= self.max_boot:
            raise ValueError("boot number is not newer than the records on flash")
        self.boot = boot
        self.seq = 0

    def fill(self):
        """(bytes used, capacity): sectors holding records, live or not yet erased, count
        whole; the capacity is every ring sector."""
        return self._nord * self._ss, self._n * self._ss

    # --- writing -------------------------------------------------------------------

    def append(self, payload):
        """Store one record. Returns its seq (identity (self.boot, seq)) once it is durable
        and verified, or -1 when REFUSE_NEW refuses it (counted in `refused`)."""
        n = len(payload)
        if n < 1 or n > self.paymax:
            raise ValueError("record length must be 1..paymax bytes")
        if self.boot == 0:
            raise RingError("start() the ring with a boot number first")
        tries = 0
        while True:
            if self._off + _RHDR + n > self._ss and not self._open_next():
                self.refused += 1
                return -1
            if self._write(payload, n):
                break
            tries += 1
            if tries > self._n:
                raise RingError("flash keeps failing")
        seq = self.seq
        self.seq = seq + 1
        self.lastb = self.boot
        self.lasts = seq
        self.live += 1
        self.appended += 1
        self.payload_bytes += n
        return seq

    def _write(self, payload, n):
        h = self._h
        h[0] = 0xFF  # release flag: left erased, cleared in place by release()
        h[1] = _KIND
        h[2] = n & 0xFF
        h[3] = n >> 8
        struct.pack_into("<II", h, 4, self.boot, self.seq)
        crc = crc32(payload, crc32(self._hcrc))
        struct.pack_into("<I", h, 12, crc)
        s = self._head
        addr = self._addr(s, self._off)
        f = self._f
        try:
            # Header first: a cut between the two programs leaves a header whose CRC does
            # not match the still-erased payload (unless that payload is all 0xFF, in which
            # case the record is already complete).
            f.prog(addr, h)
            f.prog(addr + _RHDR, payload)
        except OSError:
            self._fail(addr)
            return False
        f.read(addr, self._r)
        if self._r != h or self._crc_region(addr + _RHDR, n, crc32(self._hcrc)) != crc:
            self._fail(addr)
            return False
        self._lb[s] = self.boot
        self._ls[s] = self.seq
        self._off = (self._off + _RHDR + n + 3) & ~3
        return True

    def _fail(self, addr):
        """A program failed or did not verify: spoil the attempt's kind byte (best effort;
        if that fails too the reader's identity rule hides any copy), close the sector."""
        self.bad_events += 1
        self._bad[self._head] = 1
        self._off = self._ss
        try:
            self._f.prog(addr + 1, self._zero)
        except OSError:
            pass  # the sector is already closed and marked bad; nothing more to do here

    def _count_live(self, s):
        k = 0
        off = _SHDR
        while self._hdr(s, off) == 1:
            if _gt(self._pb, self._ps, self.wb, self.ws):
                k += 1
            off = self._pnext
        return k

    def _open_next(self):
        """Make a fresh sector the head. False if REFUSE_NEW must refuse."""
        n = self._n
        x = (self._head + 1) % n if self._head >= 0 else 0
        for _ in range(n + 1):
            if self._lb[x] and (_gt(self._lb[x], self._ls[x], self.wb, self.ws) or self._wsec == x):
                live = self._count_live(x)
                if live and self.policy == REFUSE_NEW:
                    return False
                # Before x is erased, the release of everything in it must be durable
                # somewhere else: a cut erase can leave x's old records readable.
                self._meta.mark(self._lb[x], self._ls[x])
                self.wb = self._lb[x]
                self.ws = self._ls[x]
                self._wsec = -1
                if live:
                    self.dropped += live
                    self.live -= live
            self._forget(x)
            if not self._bad[x] and self._fresh(x):
                self._head = x
                self._off = _SHDR
                return True
            x = (x + 1) % n
        raise RingError("no writable sector left")

    def _forget(self, x):
        self._ord_remove(x)
        self._sseq[x] = 0
        self._lb[x] = 0
        self._ls[x] = 0
        if self._ts == x:
            self._ts = -1
            self._to = _SHDR
        if self._cs == x:
            self._cs = -1
            self._co = _SHDR
        if self._head == x:
            self._off = self._ss

    def _fresh(self, x):
        """Erase x, check it, write its header. False (x marked bad) on any failure."""
        f = self._f
        ss = self._ss
        q = self._maxseq + 1
        try:
            f.erase(self._first + x)
            if not self._blank(self._addr(x, 0), ss):
                raise OSError(5)
            h = self._h
            struct.pack_into("<IIII", h, 0, _SMAGIC, q, 0xFFFFFFFF, 0)
            struct.pack_into("<I", h, 12, crc32(self._h12))
            f.prog(self._addr(x, 0), h)
            if self._sector_seq(x) != q:
                raise OSError(5)
        except OSError:
            self._bad[x] = 1
            self.bad_events += 1
            return False
        self._maxseq = q
        self._sseq[x] = q
        self._ord[self._nord] = x
        self._nord += 1
        return True

    # --- reading and releasing ------------------------------------------------------

    def _peek(self):
        """Advance the walk (_ks, _ko) to the next record newer than (_kb, _kq) and leave
        it there (fields in _pb/_ps/_pn/_pnext). Returns its length, or -1 at the end."""
        s = self._ks
        if s < 0 or self._ord_index(s) < 0:
            if self._nord == 0:
                return -1
            s = self._ord[0]
            self._ks = s
            self._ko = _SHDR
        while True:
            s = self._ks
            st = self._hdr(s, self._ko)
            if st == 1:
                if _gt(self._pb, self._ps, self._kb, self._kq):
                    return self._pn
                self._ko = self._pnext
                continue
            if s == self._head and st == 0:
                return -1  # the newest data; more may be appended here later
            nxt = self._ord_after(s)
            if nxt < 0:
                return -1
            self._ks = nxt
            self._ko = _SHDR

    def rewind(self):
        """Restart reading at the oldest live record."""
        self._cs = self._ts
        self._co = self._to
        self.rb = self.wb
        self.rs = self.ws

    def read(self, buf):
        """Copy the next live record's payload into buf and return its length, or -1 when
        there is none. Its identity is then (self.rb, self.rs). A record longer than buf is
        passed over and TOO_BIG returned, with its identity in (rb, rs) likewise."""
        self._ks = self._cs
        self._ko = self._co
        # newer than what this reader returned and than the watermark (a drop may have
        # moved W past the reader)
        if _gt(self.wb, self.ws, self.rb, self.rs):
            self.rb = self.wb
            self.rs = self.ws
        self._kb = self.rb
        self._kq = self.rs
        n = self._peek()
        self._cs = self._ks
        self._co = self._ko
        if n < 0:
            return -1
        if len(buf) < n:
            # skipped, not copied: the caller learns its identity and may release it
            self.rb = self._pb
            self.rs = self._ps
            self._co = self._pnext
            return TOO_BIG
        addr = self._addr(self._ks, self._ko + _RHDR)
        views = self._views
        o = 0
        k = _CH
        i = _CHLOG
        while o < n:
            while k > n - o:
                k >>= 1
                i -= 1
            v = views[i]
            self._f.read(addr + o, v)
            buf[o : o + k] = v
            o += k
        self.rb = self._pb
        self.rs = self._ps
        self._co = self._pnext
        return n

    def release(self, boot, seq):
        """Release every record with identity <= (boot, seq) (the gateway has them). One
        in-place program clears the newest such record's flag byte. Returns how many live
        records were released."""
        if not _gt(boot, seq, self.wb, self.ws):
            return 0
        if _gt(boot, seq, self.lastb, self.lasts):
            raise ValueError("release beyond the newest record")
        self._ks = self._ts
        self._ko = self._to
        self._kb = self.wb
        self._kq = self.ws
        k = 0
        ls = -1
        lo = 0
        lb = 0
        lq = 0
        while True:
            n = self._peek()
            if n < 0 or _gt(self._pb, self._ps, boot, seq):
                break
            k += 1
            ls = self._ks
            lo = self._ko
            lb = self._pb
            lq = self._ps
            self._kb = lb
            self._kq = lq
            self._ko = self._pnext
        if k == 0:
            return 0
        addr = self._addr(ls, lo)
        wsec = ls
        try:
            self._f.prog(addr, self._zero)
            self._f.read(addr, self._one)
            ok = self._one[0] != 0xFF
        except OSError:
            ok = False
        if not ok:
            # The flag did not stick (bad block): the meta log records the release instead.
            self.bad_events += 1
            self._meta.mark(lb, lq)
            wsec = -1
        self.wb = lb
        self.ws = lq
        self._wsec = wsec
        # the walk stopped just after the last released record: nothing live lies before it
        self._ts = self._ks
        self._to = self._ko
        self.live -= k
        self.released += k
        if _gt(lb, lq, self.rb, self.rs):
            self.rb = lb
            self.rs = lq
            self._cs = self._ts
            self._co = self._to
        return k
