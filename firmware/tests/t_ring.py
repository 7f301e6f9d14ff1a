"""Ring and meta log behaviour without power cuts: order, release, recovery, overflow
policies, bad input, and the release watermark surviving a cut erase of its sector."""

import gc

import mptest
from metalog import Meta
from mptest import check
from noremu import NorFlash, PowerCut
from ring import DROP_OLDEST, REFUSE_NEW, TOO_BIG, Ring, RingError
from store import open_store

SS = 1024


def _flash(nsec=8):
    return NorFlash(mptest.tmpdir() + "/ring.img", SS, nsec, fresh=True)


def _payload(i, n=10):
    return bytes((i + j) & 0xFF for j in range(n))


def _read_all(ring):
    out = []
    buf = bytearray(ring.paymax)
    ring.rewind()
    while True:
        n = ring.read(buf)
        if n < 0:
            return out
        out.append((ring.rb, ring.rs, bytes(buf[:n])))


def test_append_then_read_in_order():
    f = _flash()
    r = open_store(f)
    check(_read_all(r) == [], "fresh ring not empty")
    for i in range(30):
        check(r.append(_payload(i, 1 + i)) == i, "seq not consecutive")
    got = _read_all(r)
    check(len(got) == 30 and r.live == 30, "count", len(got))
    for i in range(30):
        check(got[i] == (r.boot, i, _payload(i, 1 + i)), "record", i, "wrong")


def test_recovery_keeps_records_and_takes_a_new_boot():
    f = _flash()
    r = open_store(f)
    for i in range(50):
        r.append(_payload(i))
    b1 = r.boot
    r2 = open_store(f)
    check(r2.boot == b1 + 1 and r2.seq == 0, "boot not advanced", r2.boot)
    got = _read_all(r2)
    check(len(got) == 50 and got[49][:2] == (b1, 49), "records lost in recovery")
    r2.append(b"new")
    got = _read_all(open_store(f))
    check(len(got) == 51 and got[50] == (b1 + 1, 0, b"new"), "append after recovery")


def test_release_is_durable_and_never_comes_back():
    f = _flash()
    r = open_store(f)
    for i in range(40):
        r.append(_payload(i))
    b = r.boot
    check(r.release(b, 9) == 10, "release count")
    check(r.release(b, 9) == 0, "release twice counted twice")
    progs = f.prog_ops
    check(r.release(b, 19) == 10 and f.prog_ops == progs + 1, "release is not one program")
    got = _read_all(open_store(f))
    check(len(got) == 20 and got[0][:2] == (b, 20), "released records came back", got[0][:2])


def test_release_beyond_newest_is_refused_and_changes_nothing():
    f = _flash()
    r = open_store(f)
    for i in range(5):
        r.append(_payload(i))
    ops = f.ops
    try:
        r.release(r.boot, 5)
    except ValueError:
        pass
    else:
        raise mptest.Failure("release beyond the newest record accepted")
    check(f.ops == ops and r.live == 5 and len(_read_all(open_store(f))) == 5, "state changed")


def test_bad_input_is_refused_and_changes_nothing():
    f = _flash()
    r = open_store(f)
    r.append(b"keep")
    ops = f.ops
    for bad in (b"", bytes(r.paymax + 1)):
        try:
            r.append(bad)
        except ValueError:
            continue
        raise mptest.Failure(f"record of {len(bad)} bytes accepted")
    check(f.ops == ops and r.live == 1 and r.seq == 1, "bad input changed state")
    check(r.append(bytes(r.paymax)) == 1, "largest record refused")
    check(len(_read_all(open_store(f))) == 2, "records after bad input")


def test_append_before_start_is_refused():
    f = _flash()
    meta = Meta(f, 0)
    meta.load()
    r = Ring(f, meta, 2, 6)
    r.recover()
    try:
        r.append(b"x")
    except RingError:
        pass
    else:
        raise mptest.Failure("append without a boot number")
    try:
        r.start(0)
    except ValueError:
        return
    raise mptest.Failure("boot 0 accepted")


def test_drop_oldest_counts_and_keeps_the_newest():
    f = _flash(6)  # 4 ring sectors of 1 KiB
    r = open_store(f, DROP_OLDEST)
    total = 400
    for i in range(total):
        check(r.append(_payload(i, 40)) == i, "append refused under DROP_OLDEST")
    got = _read_all(r)
    check(r.dropped > 0 and r.dropped + len(got) == total, "dropped", r.dropped, len(got))
    check(got[-1][1] == total - 1 and got[0][1] == r.dropped, "not the oldest dropped")
    got2 = _read_all(open_store(f, DROP_OLDEST))
    check(got2 == got, "dropped records came back after reboot")


def test_refuse_new_counts_and_keeps_the_oldest():
    f = _flash(6)
    r = open_store(f, REFUSE_NEW)
    acc = 0
    for i in range(400):
        if r.append(_payload(i, 40)) >= 0:
            acc += 1
    check(r.refused == 400 - acc and r.refused > 0 and r.dropped == 0, "refused", r.refused)
    got = _read_all(r)
    check(len(got) == acc and got[0][1] == 0, "oldest not kept")
    r.release(r.boot, acc - 1)
    check(r.append(b"room again") >= 0, "no room after release")


def _cut_at_erase(kind, where, buf):
    if kind == 1:
        _G[0].cut_at = _G[0].ops  # this very operation


_G = [None]


def test_release_mark_survives_a_cut_erase_of_its_sector():
    # The newest release flag sits on the last record of the oldest sector. Reusing that
    # sector must first copy the watermark into the meta log: a cut erase that wipes only
    # the sector's end would otherwise bring its released records back.
    f = _flash(5)  # 3 ring sectors
    r = open_store(f, DROP_OLDEST)
    i = 0
    while r._head <= 0:
        r.append(_payload(i, 40))
        i += 1
    first_in_1 = i - 1  # this record opened sector 1
    r.release(r.boot, first_in_1 - 1)  # all of sector 0 released, flag on its last record
    while r._head != 2:
        r.append(_payload(i, 40))
        i += 1
    g = NorFlash(mptest.tmpdir() + "/ring2.img", SS, 5, fresh=True)
    g.erase_tear = 3  # only a suffix of the sector gets erased
    _G[0] = g
    r = None
    for seed in range(1, 25):
        r2 = None
        gc.collect()  # three rings and two flashes in 64 KB: keep the heap in one piece
        f.copy_to(g)
        g.revive()
        r2 = open_store(g, DROP_OLDEST)
        g.rng.s = seed
        g.on_op = _cut_at_erase
        j = i
        try:
            while j < i + 100:
                r2.append(_payload(j, 40))
                j += 1
        except PowerCut:
            pass
        g.on_op = None
        check(g.dead, "sector 0 never reused")
        g.revive()
        got = _read_all(open_store(g, DROP_OLDEST))
        check(got and got[0][1] >= first_in_1, "released record", got[0][1], "came back")


def test_meta_log_switches_sectors_and_keeps_the_newest():
    f = _flash()
    m = Meta(f, 0)
    m.load()
    for i in range(1, 200):  # 32 entries per 1 KiB sector: several switches
        check(m.new_boot() == i, "boot", i)
        if i % 7 == 0:
            m.mark(i, 3)
    m2 = Meta(f, 0)
    m2.load()
    check(m2.boot == 199 and m2.mark_boot == 196 and m2.mark_seq == 3, "state lost")
    check(f.erases[0] + f.erases[1] > 4, "meta sectors never switched")


def test_meta_torn_entry_is_ignored():
    f = _flash()
    m = Meta(f, 0)
    m.load()
    m.new_boot()
    m.new_boot()
    for seed in range(1, 80):  # 32 entries per sector: cuts land on switches too
        b0 = m.boot
        f.rng.s = seed
        f.cut_at = f.ops
        try:
            m.new_boot()
        except PowerCut:
            pass
        f.revive()
        m = Meta(f, 0)
        m.load()
        check(m.boot in (b0, b0 + 1), "boot", m.boot, "after a cut from", b0)
        check(m.new_boot() == m.boot and m.boot > b0, "next boot after a torn entry")


def test_a_record_too_big_for_the_buffer_is_passed_over_with_its_identity():
    r = open_store(_flash())
    r.append(_payload(1, 10))
    r.append(_payload(2, 100))
    r.append(_payload(3, 10))
    buf = bytearray(20)
    check(r.read(buf) == 10 and r.rs == 0)
    check(r.read(buf) == TOO_BIG and (r.rb, r.rs) == (r.boot, 1), "identity of the big one")
    check(r.read(buf) == 10 and r.rs == 2 and bytes(buf[:10]) == _payload(3, 10))
    check(r.release(r.boot, 1) == 2, "released up to the big one")
    check([x[1] for x in _read_all(r)] == [2])


mptest.run(
    [
        test_a_record_too_big_for_the_buffer_is_passed_over_with_its_identity,
        test_append_then_read_in_order,
        test_recovery_keeps_records_and_takes_a_new_boot,
        test_release_is_durable_and_never_comes_back,
        test_release_beyond_newest_is_refused_and_changes_nothing,
        test_bad_input_is_refused_and_changes_nothing,
        test_append_before_start_is_refused,
        test_drop_oldest_counts_and_keeps_the_newest,
        test_refuse_new_counts_and_keeps_the_oldest,
        test_release_mark_survives_a_cut_erase_of_its_sector,
        test_meta_log_switches_sectors_and_keeps_the_newest,
        test_meta_torn_entry_is_ignored,
    ]
)
