"""append() allocates nothing per record, across sector opens and overflow drops too.
Measured with gc.mem_alloc() while the collector is disabled."""

import gc

import mptest
from mptest import check, metric
from noremu import NorFlash
from ring import DROP_OLDEST
from store import open_store


def _measure(records, release_every):
    f = NorFlash(mptest.tmpdir() + "/alloc.img", 1024, 6, fresh=True)
    r = open_store(f, DROP_OLDEST)
    buf = bytearray(40)
    mv = memoryview(buf)
    views = [mv[:k] for k in range(1, 41)]  # the caller's exact-length payloads, made once
    for i in range(60):  # warm up: first sector open, meta write, every code path once
        r.append(views[i % 40])
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        opens = f.erase_ops
        for i in range(records):
            buf[0] = i & 0xFF
            r.append(views[i % 40])
            if release_every and i % release_every == release_every - 1:
                r.release(r.boot, r.seq - 5)
        grew = gc.mem_alloc() - before
        opens = f.erase_ops - opens
    finally:
        gc.enable()
    return grew, opens, r


def test_append_allocates_nothing():
    grew, opens, r = _measure(1000, 0)
    metric("append_heap_bytes_per_1000_records", grew)
    metric("append_sector_opens_during_measure", opens)
    check(opens > 10 and r.dropped > 0, "measure did not cross sectors and overflow")
    check(grew == 0, "append allocated", grew, "bytes over 1000 records")


def test_append_and_release_allocate_nothing():
    grew, opens, r = _measure(1000, 7)
    metric("append_release_heap_bytes_per_1000_records", grew)
    check(opens > 10 and r.released > 0, "measure did not cross sectors and release")
    check(grew == 0, "append + release allocated", grew, "bytes over 1000 records")


def test_reader_allocates_nothing():
    f = NorFlash(mptest.tmpdir() + "/alloc.img", 1024, 6, fresh=True)
    r = open_store(f, DROP_OLDEST)
    for i in range(100):
        r.append(b"0123456789abcdef"[: 1 + i % 16])
    buf = bytearray(r.paymax)
    r.rewind()
    r.read(buf)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        r.rewind()
        n = 0
        while r.read(buf) > 0:
            n += 1
        grew = gc.mem_alloc() - before
    finally:
        gc.enable()
    metric("reader_heap_bytes_per_pass", grew)
    check(n == r.live, "reader did not read everything")
    check(grew == 0, "reader allocated", grew, "bytes")


mptest.run(
    [
        test_append_allocates_nothing,
        test_append_and_release_allocate_nothing,
        test_reader_allocates_nothing,
    ]
)
