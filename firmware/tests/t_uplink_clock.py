"""uplink.Uplink's clock estimate, health reports sharing the one exchange, wake(), and the
heap and wire bytes a record costs; against a scripted gateway in the same asyncio loop."""

import asyncio
import gc
import time

import mptest
import uplink
from cbor import dumps
from clock import DeviceClock
from coapsrv import Peer, ack_for, client, run
from gwsim import batch, done, setup
from mptest import check, metric
from noremu import NorFlash
from store import open_store


def test_clock_estimate():
    _ring, gw, up, _events = setup([lambda boot, s=s: batch(boot, s) for s in (0, 3, 6)])
    check(up.clock_estimate() is None, "an estimate before any reply")

    async def main():
        for _ in range(3):
            await up.step()
        est = up.clock_estimate()
        # a slow reply (wide interval) does not replace a tight sample
        gw.delay_ms = 300
        check(await up.send_health(b"\xa0"), "health not acked")
        est2 = up.clock_estimate()
        await done(gw, up)
        return est, est2

    est, est2 = run(main())
    off, unc = est
    metric("clock_uncertainty_us_loopback", unc)
    check(abs(off - gw.skew) <= unc, "offset", off - gw.skew, "outside +-", unc)
    check(1000 <= unc < 30000, "uncertainty", unc)
    check(est2[0] == off and est2[1] >= unc, "a wider sample replaced a tight one", est2)
    # drift: 100 ppm of the device time since the sample
    up._cat -= 10000000  # as if the sample were 10 s older
    check(up.clock_estimate()[1] - est2[1] >= 1000, "uncertainty does not grow with age")
    # so a newer sample, even somewhat wider than the old one was, now replaces it
    check(up._aged(up._clock.now_us()) > unc + 900, "aged")


def test_health_shares_the_one_exchange():
    recs = [lambda boot, s=s: batch(boot, s) for s in range(0, 12, 3)]
    ring, gw, up, _ = setup(recs, ack_timeout_ms=500)
    gw.delay_ms = 30  # each answer takes a while: overlapping requests would show

    async def main():
        task = asyncio.create_task(up.run())
        oks = []
        for _ in range(4):
            oks.append(await up.send_health(b"\xa0"))
        for _ in range(100):
            if ring.live == 0:
                break
            await asyncio.sleep_ms(20)
        task.cancel()
        await done(gw, up)
        return oks

    oks = run(main())
    check(oks == [True] * 4 and ring.live == 0, oks, ring.live)
    check(gw.max_outstanding == 1, "two exchanges in flight", gw.max_outstanding)
    paths = [p for p, _ in gw.bodies]
    check(paths.count(b"h") == 4 and paths.count(b"t") == 4, paths)


def test_wake_sends_at_once():
    ring, gw, up, _ = setup(idle_ms=60000)

    async def main():
        task = asyncio.create_task(up.run())
        await asyncio.sleep_ms(50)  # idle: nothing in the ring
        ring.append(batch(ring.boot, 0))
        up.wake()
        for _ in range(50):
            if up.acked:
                break
            await asyncio.sleep_ms(10)
        task.cancel()
        await done(gw, up)

    t0 = time.ticks_ms()
    run(main())
    took = time.ticks_diff(time.ticks_ms(), t0)
    check(up.acked == 1, "woken uplink did not send")
    check(took < 2000, "took", took)


_MEASURED = 5  # with the collector off, the heap must hold their garbage


class _Fake:
    mid = 0
    token = b"\x00\x00\x00\x00"


def test_allocation_per_record():
    # A peer that allocates nothing answers every CON with one fixed telemetry-ack (boot of
    # the ring, a high-seq beyond every batch); the uplink's step() is measured per record.
    f = NorFlash(mptest.tmpdir() + "/uplink.img", 1024, 12, fresh=True)
    ring = open_store(f)
    clock = DeviceClock()
    peer = Peer()
    c = client(peer.port, ack_timeout_ms=500)
    up = uplink.Uplink(ring, c, clock)
    ack = dumps({0: 1, 1: ring.boot, 2: 1 << 40, 3: 1700000000000000})
    tx = bytearray(ack_for(_Fake(), 0x44, (), ack))
    rx = bytearray(1200)
    payload = batch(ring.boot, 0, (20,))
    metric("typical_batch_bytes_20_readings", len(payload))

    async def echo():
        while True:
            n = peer.s.readinto(rx)
            if not n:
                await asyncio.sleep_ms(1)
                continue
            if rx[0] & 0x30 == 0:
                for i in range(2, 8):
                    tx[i] = rx[i]
                peer.s.send(tx)

    async def main():
        c._open()
        c._sock.send(b"\x50\x00\x00\x00")
        await asyncio.sleep_ms(10)
        _, addr = peer.s.recvfrom(64)
        peer.s.connect(addr)
        task = asyncio.create_task(echo())
        for _ in range(5 + _MEASURED):
            check(ring.append(payload) >= 0, "append")
        for _ in range(5):
            check(await up.step() == 0, up.last_error)
        sent0 = c.bytes_sent
        got0 = c.bytes_received
        gc.collect()
        metric("heap_free_before_measure", gc.mem_free())
        gc.disable()
        try:
            before = gc.mem_alloc()
            for _ in range(_MEASURED):
                await up.step()
            grew = gc.mem_alloc() - before
        finally:
            gc.enable()
        task.cancel()
        c.close()
        peer.stop()
        await asyncio.sleep_ms(0)
        n = _MEASURED
        return grew // n, (c.bytes_sent - sent0) // n, (c.bytes_received - got0) // n

    per, sent, got = run(main())
    metric("uplink_step_heap_bytes_per_record", per)
    metric("uplink_wire_bytes_per_record_sent_received", str(sent) + "/" + str(got))
    ok = up.acked == 5 + _MEASURED and ring.live == 0 and ring.dropped == 0
    check(ok, up.acked, up.last_error)
    check(per <= 1500, "a record cost", per, "bytes of heap")
    check(sent == len(payload) + 13, "bytes on the wire", sent)


mptest.run(
    [
        test_clock_estimate,
        test_health_shares_the_one_exchange,
        test_wake_sends_at_once,
        test_allocation_per_record,
    ]
)
