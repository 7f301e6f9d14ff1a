"""Power loss at every program and every erase of a long workload, in one pass.

Ring A runs the workload on flash image A. Before each of A's programs and erases, the
harness copies image A to image B, applies that operation *partly* to B (a torn program or
a partly erased sector, shape and extent drawn per cut), recovers a fresh Meta + Ring on B,
and checks B against the model of what A has accepted: every accepted, unreleased record
reads back intact and in order, no released record comes back, nothing torn is returned.
A then performs the operation in full and carries on, so the workload runs once.

On a sample of cut points a second cut is armed in B's boot sequence and first writes (a cut
during recovery), then B is recovered once more and checked again.
"""

import gc
import time

import mptest
from metalog import Meta
from mptest import check, metric
from noremu import BAD_ERASE_RAISE, BAD_PROG_RAISE, BAD_PROG_SILENT, NorFlash, PowerCut, Rng
from ring import DROP_OLDEST, REFUSE_NEW, Ring
from rtmodel import Model, Payloads, kb, key, ks, read_all
from store import open_store

DOUBLE_EVERY = 8  # every 8th cut point also gets a second cut


class _Then:
    """The records B must hold after a second cut: the model from index i on, then the
    first cut's in-flight record if it landed, then B's own accepted appends."""

    def __init__(self, model):
        self.m = model
        self.i = 0
        self.extra = -1
        self.acc = []
        self.n = 0

    def set(self, i, extra, acc):
        self.i = i
        self.extra = extra
        self.acc = acc
        self.n = self.m.n - i + (1 if extra >= 0 else 0) + len(acc)

    def get(self, j):
        k = self.m.n - self.i
        if j < k:
            return self.m.get(self.i + j)
        j -= k
        if self.extra >= 0:
            if j == 0:
                return self.extra
            j -= 1
        return self.acc[j]


class Harness:
    def __init__(self, d, ss, nsec, records, seed, bad_plan=()):
        self.ss = ss
        self.nsec = nsec  # 2 meta sectors, the rest ring
        self.records = records
        self.seed = seed
        self.bad_plan = bad_plan  # (at appended count, ring sector, noremu BAD_* flags)
        self.bad_events = 0
        self.a = NorFlash(d + "/pl_a.img", ss, nsec, fresh=True)
        self.b = NorFlash(d + "/pl_b.img", ss, nsec, fresh=True)
        self.pay = Payloads()  # A's payloads (A programs straight from this buffer)
        self.vpay = Payloads()  # reads during verification
        self.cpay = Payloads()  # B's continuation appends
        cap = (nsec - 2) * ss // 20 + 8  # records of 20 bytes (1-byte payload) fill it
        self.model = Model(cap)
        self.exp = _Then(self.model)  # expected sequence after a second cut
        self.extra = -1  # identity of the record in flight, if an append is in flight
        self.used_boot = 0  # newest boot that any record on flash may carry
        self.op_max_i = 0
        self.cuts = 0
        self.cut_prog = 0
        self.cut_erase = 0
        self.doubles = 0  # sampled points where the second cut really hit
        self.double_tries = 0
        self.heap_hw = 0
        self.dropped = 0  # records dropped by overflow, over all boots
        self.a.on_op = self.hook

    def begin(self, extra):
        self.extra = extra
        self.op_max_i = 0

    def end(self, removed):
        # The op finished: whatever a cut inside it lost must be what it removed in full.
        check(
            self.op_max_i <= removed,
            "a cut lost",
            self.op_max_i,
            "live records, the op removed",
            removed,
        )
        self.extra = -1

    def hook(self, kind, where, buf):
        n = self.cuts
        self.cuts = n + 1
        gc.collect()  # several rings at once in 64 KB: keep the heap unfragmented
        a = self.a
        b = self.b
        a.copy_to(b)
        b.revive()
        b.rng.s = (n * 2654435761 + 1) & 0xFFFFFFFF or 1
        b.tear = n & 1
        if kind == 0:
            self.cut_prog += 1
            b.tear_prog(where, buf)
        else:
            self.cut_erase += 1
            b.tear_erase(where)
        m = self.model
        meta = Meta(b, 0)
        meta.load()
        r = Ring(b, meta, 2, self.nsec - 2, REFUSE_NEW)
        r.recover()
        res = read_all(r, self.vpay, m.get, m.n, m.n, self.extra)
        i = res >> 1
        if i > self.op_max_i:
            self.op_max_i = i
        double = n % DOUBLE_EVERY == DOUBLE_EVERY - 1
        if double:
            self.double_tries += 1
            b.cut_at = b.ops + (n // DOUBLE_EVERY) % 9
        acc = []
        extra2 = -1
        rel = 0  # 1 = a release was started, 2 = it returned
        try:
            nb = meta.new_boot(r.max_boot)
            check(nb > self.used_boot, "boot", nb, "reused; records may carry", self.used_boot)
            r.start(nb)
            if double:
                for _ in range(3):
                    extra2 = key(nb, r.seq)
                    s = r.append(self.cpay.fill(nb, r.seq))
                    if s >= 0:
                        acc.append(key(nb, s))
                    extra2 = -1
                first = m.get(i) if i < m.n else (self.extra if res & 1 else -1)
                if first >= 0:
                    rel = 1
                    r.release(kb(first), ks(first))
                    rel = 2
        except PowerCut:
            self.doubles += 1
        r = None
        if double:
            b.revive()
            gc.collect()
            meta2 = Meta(b, 0)
            meta2.load()
            r2 = Ring(b, meta2, 2, self.nsec - 2, REFUSE_NEW)
            r2.recover()
            exp = self.exp
            exp.set(i, self.extra if res & 1 else -1, acc)
            res2 = read_all(r2, self.vpay, exp.get, exp.n, 1 if rel else 0, extra2)
            check(rel != 2 or res2 >> 1 == 1, "a completed release came back")
        gc.collect()
        h = gc.mem_alloc()
        if h > self.heap_hw:
            self.heap_hw = h

    def run(self):
        a = self.a
        m = self.model
        pay = self.pay
        rng = Rng(self.seed)
        self.begin(-1)
        ring = open_store(a, DROP_OLDEST)
        self.end(0)
        appended = 0
        reboots = 0
        releases = 0
        buf = bytearray(64)
        while appended < self.records:
            # phases where the gateway is away: releases are rare and small, the ring overflows
            heavy = (appended * 8 // self.records) in (1, 2, 5)
            for at, sec, flags in self.bad_plan:
                if at == appended:
                    a.bad[2 + sec] = flags
            r = rng.below(100)
            e0 = ring.bad_events
            if r < (98 if heavy else 60):
                b = ring.boot
                s = ring.seq
                self.used_boot = b
                self.begin(key(b, s))
                d0 = ring.dropped
                got = ring.append(pay.fill(b, s))
                d = ring.dropped - d0
                check(got == s, "append returned", got, "expected seq", s)
                self.dropped += d
                m.pop(d)
                m.push(key(b, s))
                self.end(d)
                appended += 1
            elif r < (99 if heavy else 97):
                if m.n == 0:
                    continue
                lim = 3 if heavy else 24
                t = m.get(rng.below(m.n if m.n < lim else lim))
                self.begin(-1)
                k = ring.release(kb(t), ks(t))
                want = m.count_le(t)
                check(k == want, "release returned", k, "expected", want)
                m.pop(k)
                self.end(k)
                releases += 1
            elif r < (100 if heavy else 99):
                ring.rewind()
                for i in range(8 if m.n > 8 else m.n):
                    n = ring.read(buf)
                    check(n > 0 and key(ring.rb, ring.rs) == m.get(i), "reader out of order")
            else:
                self.begin(-1)
                ring = None  # the old instance is gone on a real reboot too
                ring = open_store(a, DROP_OLDEST)
                self.end(0)
                reboots += 1
            if ring.bad_events > e0:
                self.bad_events += ring.bad_events - e0
            check(ring.live == m.n, "ring.live", ring.live, "model", m.n)
        ring_erases = 0
        for s in range(2, self.nsec):
            ring_erases += a.erases[s]
        return ring, appended, releases, reboots, ring_erases


def _power_loss(ss, nsec, records, seed, bad_plan=()):
    t0 = time.ticks_ms()
    h = Harness(mptest.tmpdir(), ss, nsec, records, seed, bad_plan)
    _, appended, releases, reboots, ring_erases = h.run()
    secs = time.ticks_diff(time.ticks_ms(), t0) / 1000
    wraps = ring_erases / (nsec - 2)
    tag = f"s{ss}{'_bad' if bad_plan else ''}_"
    metric(tag + "records_appended", appended)
    metric(tag + "releases", releases)
    metric(tag + "clean_reboots", reboots)
    metric(tag + "dropped_by_overflow", h.dropped)
    metric(tag + "ring_wraps", wraps)
    metric(tag + "cut_points", h.cuts)
    metric(tag + "cut_points_program", h.cut_prog)
    metric(tag + "cut_points_erase", h.cut_erase)
    metric(tag + "double_cut_samples", h.double_tries)
    metric(tag + "double_cuts_hit", h.doubles)
    metric(tag + "heap_high_water_bytes", h.heap_hw)
    metric(tag + "bad_block_events", h.bad_events)
    metric(tag + "seconds", secs)
    check(appended >= 2000, "workload too short")
    check(wraps >= 2, "ring wrapped only", wraps, "times")
    check(h.dropped > 0, "overflow path never exercised")
    check(h.cut_erase > 0 and h.cut_prog > 2 * appended, "too few cut points")
    check(h.doubles > 0, "no second cut ever hit")
    check(not bad_plan or h.bad_events > 0, "bad blocks never struck")


def test_power_loss_4k_sectors():
    _power_loss(4096, 8, 2100, 20260701)


def test_power_loss_1k_sectors():
    # small sectors: many more erases, sector opens and meta-log sector switches per record
    _power_loss(1024, 8, 2100, 777)


def test_power_loss_with_bad_blocks():
    # bad blocks come and go while power is cut at every write
    plan = (
        (300, 4, BAD_PROG_SILENT),
        (700, 4, 0),
        (900, 5, BAD_ERASE_RAISE),
        (1300, 5, 0),
        (1500, 3, BAD_PROG_RAISE),
        (1800, 3, 0),
    )
    _power_loss(1024, 8, 2100, 9001, plan)


mptest.run(
    [test_power_loss_4k_sectors, test_power_loss_1k_sectors, test_power_loss_with_bad_blocks]
)
