"""Wear: a FIFO ring erases each sector once per lap, so after 100 laps (with releases and
reboots in between) the most-erased ring sector has at most 1.1x the erases of the least.
Also reports flash bytes programmed per stored payload byte."""

import mptest
from mptest import check, metric
from noremu import NorFlash, PowerCut, Rng
from ring import DROP_OLDEST
from store import open_store

SS = 4096
NSEC = 8  # 2 meta + 6 ring


def test_wear_is_even_after_100_wraps():
    f = NorFlash(mptest.tmpdir() + "/wear.img", SS, NSEC, fresh=True)
    r = open_store(f, DROP_OLDEST)
    payload = bytearray(32)
    rng = Rng(5)
    i = 0
    cuts = 0
    while True:
        ring_erases = [f.erases[s] for s in range(2, NSEC)]
        if min(ring_erases) >= 100:
            break
        payload[0] = i & 0xFF
        try:
            r.append(payload)
            i += 1
            if i % 10 == 0:
                r.release(r.boot, r.seq - 3)  # the gateway acks batches, a little behind
            if i % 997 == 0:
                r = open_store(f, DROP_OLDEST)  # a clean reboot
            if i % 1999 == 0:
                f.cut_at = f.ops + rng.below(3)  # and, now and then, a power cut
        except PowerCut:
            cuts += 1
            f.revive()
            r = open_store(f, DROP_OLDEST)
    hi = max(ring_erases)
    lo = min(ring_erases)
    metric("records", i)
    metric("power_cuts", cuts)
    metric("ring_erases_min", lo)
    metric("ring_erases_max", hi)
    metric("ring_erase_ratio", hi / lo)
    metric("meta_erases", f.erases[0] + f.erases[1])
    check(hi <= 1.1 * lo, "uneven wear", ring_erases)


def _bytes_per_payload_byte(size, batch):
    f = NorFlash(mptest.tmpdir() + "/wear2.img", SS, NSEC, fresh=True)
    r = open_store(f, DROP_OLDEST)
    f.reset_counters()
    payload = bytearray(size)
    for i in range(3000):
        r.append(payload)
        if i % batch == batch - 1:
            r.release(r.boot, r.seq - 1)
    return f.prog_bytes / r.payload_bytes, f.prog_bytes / r.appended


def test_flash_bytes_per_payload_byte():
    for size in (8, 32, 128):
        per_byte, per_record = _bytes_per_payload_byte(size, 10)
        metric(f"prog_bytes_per_payload_byte_{size}B_records", per_byte)
        metric(f"prog_bytes_per_record_{size}B_records", per_record)
        # record header 16 + one release flag per 10 records + sector headers and marks
        check(per_record < size + 16 + 1, "overhead too high for", size, per_record)


mptest.run([test_wear_is_even_after_100_wraps, test_flash_bytes_per_payload_byte])
