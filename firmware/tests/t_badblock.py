"""Bad blocks: programs and erases that raise, or silently do nothing. Every accepted record
still reads back, released ones stay released, and hopeless flash gives a clear error."""

import mptest
from metalog import MetaError
from mptest import check, metric
from noremu import (
    BAD_ERASE_RAISE,
    BAD_ERASE_SILENT,
    BAD_PROG_RAISE,
    BAD_PROG_SILENT,
    NorFlash,
)
from ring import DROP_OLDEST, RingError
from rtmodel import Model, Payloads, key, read_all
from store import open_store

SS = 1024
NSEC = 8


def _flash():
    return NorFlash(mptest.tmpdir() + "/bad.img", SS, NSEC, fresh=True)


def _workload(flag, when, sector):
    """600 appends with releases; `flag` strikes ring sector `sector` after `when`
    appends, or (when < 0) while that sector is the head and already holds records.
    Checks against the model live, then again after a reboot."""
    f = _flash()
    pay = Payloads(32)
    vpay = Payloads(32)
    m = Model(6 * SS // 20 + 8)
    r = open_store(f, DROP_OLDEST)
    for i in range(600):
        if i == when or (when < 0 and r._head == sector and r._off > SS // 2):
            f.bad[2 + sector] = flag
            when = 600
        b = r.boot
        s = r.seq
        d0 = r.dropped
        check(r.append(pay.fill(b, s)) == s, "append failed")
        m.pop(r.dropped - d0)
        m.push(key(b, s))
        if i % 9 == 8:
            t = m.get(m.n // 2)
            m.pop(r.release(b, t & 0x3FFFF) if t >> 18 == b else 0)
    read_all(r, vpay, m.get, m.n, 0, -1)
    r2 = open_store(f, DROP_OLDEST)
    read_all(r2, vpay, m.get, m.n, 0, -1)
    return r, f


def test_program_that_raises():
    r, _ = _workload(BAD_PROG_RAISE, 150, 3)
    metric("prog_raise_bad_events", r.bad_events)
    check(r.bad_events > 0, "the bad sector was never hit")


def test_program_that_raises_in_the_head_sector():
    r, _ = _workload(BAD_PROG_RAISE, -1, 3)
    check(r.bad_events > 0, "the bad sector was never hit")


def test_program_that_does_nothing():
    r, _ = _workload(BAD_PROG_SILENT, 150, 3)
    metric("prog_silent_bad_events", r.bad_events)
    check(r.bad_events > 0, "the bad sector was never hit")


def test_program_that_does_nothing_in_the_head_sector():
    r, _ = _workload(BAD_PROG_SILENT, -1, 3)
    check(r.bad_events > 0, "the bad sector was never hit")


def test_a_second_copy_of_a_record_is_skipped():
    # A retry after a failed program can leave two valid copies of one identity when the
    # first one's kill program fails too; readers return it once.
    f = _flash()
    r = open_store(f)
    for i in range(5):
        r.append(bytes(f"record {i}", "ascii"))
    raw = bytearray(16 + 8)
    f.read((2 + r._head) * SS + 16 + 4 * 24, raw)  # record 4: 16 + 8 bytes, 4-aligned
    check(raw[16:] == b"record 4", "test setup: record 4 not where expected")
    f.prog((2 + r._head) * SS + r._off, raw)
    r2 = open_store(f)
    buf = bytearray(64)
    n = 0
    r2.rewind()
    while r2.read(buf) > 0:
        n += 1
    check(n == 5 and r2.live == 5 and r2.dups == 1, "duplicate returned", n, r2.dups)


def test_erase_that_raises():
    r, _ = _workload(BAD_ERASE_RAISE, 50, 4)
    check(r.bad_events > 0, "the bad sector was never hit")


def test_erase_that_does_nothing():
    r, _ = _workload(BAD_ERASE_SILENT, 50, 4)
    check(r.bad_events > 0, "the bad sector was never hit")


def test_release_flag_that_does_not_stick_goes_to_the_meta_log():
    f = _flash()
    r = open_store(f)
    for i in range(10):
        r.append(bytes(f"record {i}", "ascii"))
    f.bad[2 + r._head] = BAD_PROG_SILENT
    mark_writes = r._meta.writes
    check(r.release(r.boot, 4) == 5, "release count")
    check(r._meta.writes == mark_writes + 1, "no meta mark after a failed flag")
    f.bad[2 + r._head] = 0
    r2 = open_store(f)
    check(r2.live == 5 and r2.wb == r.boot and r2.ws == 4, "release lost", r2.live)


def test_bad_meta_sector_is_a_clear_error():
    f = _flash()
    f.bad[0] = BAD_PROG_RAISE
    f.bad[1] = BAD_PROG_RAISE
    try:
        open_store(f)
    except MetaError:
        return
    raise mptest.Failure("boot counter on dead flash went unnoticed")


def test_no_writable_sector_is_a_clear_error():
    f = _flash()
    for s in range(2, NSEC):
        f.bad[s] = BAD_ERASE_RAISE
    r = open_store(f)
    try:
        r.append(b"x")
    except RingError:
        check(r.live == 0, "a record counted as stored")
        return
    raise mptest.Failure("append on dead flash went unnoticed")


mptest.run(
    [
        test_program_that_raises,
        test_program_that_raises_in_the_head_sector,
        test_program_that_does_nothing,
        test_program_that_does_nothing_in_the_head_sector,
        test_a_second_copy_of_a_record_is_skipped,
        test_erase_that_raises,
        test_erase_that_does_nothing,
        test_release_flag_that_does_not_stick_goes_to_the_meta_log,
        test_bad_meta_sector_is_a_clear_error,
        test_no_writable_sector_is_a_clear_error,
    ]
)
