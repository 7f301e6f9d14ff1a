"""(boot, seq) never repeats: 10,000 simulated resets, two in three cut at a random write
(the boot-counter entry, a meta-log sector switch, a sector open, a record, a release).

Each session recovers, checks every record against the model (accepted and unreleased ones
intact and in order, nothing released or torn), takes a boot number, appends and releases.
A boot number may only come back if the session that took it wrote nothing: its entry was
torn, so no record can carry it.
"""

import time

import mptest
from metalog import Meta
from mptest import check, metric
from noremu import NorFlash, PowerCut, Rng
from ring import REFUSE_NEW, Ring
from rtmodel import Model, Payloads, kb, key, ks, read_all

RESETS = 10000


def test_boot_seq_never_repeats_across_resets():
    t0 = time.ticks_ms()
    f = NorFlash(mptest.tmpdir() + "/resets.img", 1024, 8, fresh=True)
    pay = Payloads(16)
    vpay = Payloads(16)
    m = Model(6 * 1024 // 20 + 8)
    rng = Rng(4242)
    used_boot = 0  # newest boot a record on flash may carry (an append was started)
    taken = 0  # newest boot whose meta entry was confirmed
    pend_extra = -1  # identity of the append in flight at the cut
    pend_rel = 0  # live records a release in flight at the cut may have released
    cuts = 0
    records = 0
    for _ in range(RESETS):
        f.revive()
        f.cut_at = f.ops + rng.below(8) if rng.below(3) else -1
        try:
            meta = Meta(f, 0)
            meta.load()
            ring = Ring(f, meta, 2, 6, REFUSE_NEW)
            ring.recover()
            res = read_all(ring, vpay, m.get, m.n, pend_rel, pend_extra)
            m.pop(res >> 1)
            if res & 1:
                m.push(pend_extra)
            pend_extra = -1
            pend_rel = 0
            boot = meta.new_boot(ring.max_boot)
            check(boot > used_boot, "boot", boot, "reused: records may carry", used_boot)
            check(boot > taken, "boot", boot, "not after the confirmed", taken)
            taken = boot
            ring.start(boot)
            for _ in range(rng.below(4)):
                used_boot = boot
                pend_extra = key(boot, ring.seq)
                s = ring.append(pay.fill(boot, ring.seq))
                pend_extra = -1
                if s >= 0:
                    m.push(key(boot, s))
                    records += 1
            if m.n and rng.below(2):
                t = m.get(rng.below(m.n if m.n < 6 else 6))
                pend_rel = m.count_le(t)
                k = ring.release(kb(t), ks(t))
                check(k == pend_rel, "release count", k, pend_rel)
                m.pop(k)
                pend_rel = 0
        except PowerCut:
            cuts += 1
    secs = time.ticks_diff(time.ticks_ms(), t0) / 1000
    metric("resets", RESETS)
    metric("resets_cut", cuts)
    metric("records_accepted", records)
    metric("last_boot", taken)
    metric("meta_sector_erases", f.erases[0] + f.erases[1])
    metric("seconds", secs)
    check(cuts > RESETS // 3, "too few cuts", cuts)
    check(taken >= RESETS // 2, "boot numbers did not advance", taken)


mptest.run([test_boot_seq_never_repeats_across_resets])
