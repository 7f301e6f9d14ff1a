"""uplink.Uplink's answers to the gateway, one step() at a time, on a real ring over the NOR
emulator against a scripted gateway: release only on an ack that covers the batch, the waits
for 5.03 / 4.29 / failures, quarantine on 4.xx, nothing released on a failure."""

import mptest
import uplink
from cbor import dumps, loads
from coapsrv import run
from gwsim import batch, done, setup
from mptest import check, metric


def test_summary_counts_readings():
    _ring, gw, up, _ = setup()
    for payload, want in (
        (batch(5, 100, (3,)), (5, 100, 3)),
        (batch(5, 7, (2, 4, 1)), (5, 7, 7)),
        (batch(9, 0, (10, 20), block=True), (9, 0, 30)),
    ):
        up._buf[: len(payload)] = payload
        ok = up._summary(len(payload))
        check(ok and (up.boot, up.seq, up.readings) == want, (up.boot, up.seq, up.readings))
    for bad in (b"\xa0", b"\x01", b"\xa1\x02\x05", b"\xff"):
        up._buf[: len(bad)] = bad
        check(not up._summary(len(bad)), "read", bad, "as a batch")
    gw.stop()


def test_ack_releases_in_order():
    recs = [lambda boot, s=s: batch(boot, s, (3,)) for s in (0, 3, 6)]
    ring, gw, up, events = setup(recs)

    async def main():
        for _ in range(3):
            wait = await up.step()
            check(wait == 0, "wait", wait, up.last_error)
        check(await up.step() == -1, "ring should be empty")
        await done(gw, up)

    run(main())
    check(ring.live == 0 and up.acked == 3 and up.acked_readings == 9, ring.live, up.acked)
    seqs = [loads(p)[3] for _, p in gw.bodies]
    check(seqs == [0, 3, 6], seqs)
    kinds = [e[0] for e in events if e[0] != uplink.CLOCK]
    check(kinds == [uplink.ACKED, uplink.RELEASED] * 3, kinds)
    check(events[-1][1:] == (ring.boot, 2, 6), events[-1])


def test_ack_that_does_not_cover_is_a_failure():
    ring, gw, up, _events = setup([lambda boot: batch(boot, 10, (4,))])
    answers = []

    def answer(b):
        answers.append(1)
        code, body, age = gw.ack(b)
        if len(answers) == 1:
            return 0x44, dumps({0: 1, 1: b[2], 2: 12, 3: gw.now()}), -1  # high-seq 12 < 13
        if len(answers) == 2:
            return 0x44, dumps({0: 1, 1: b[2] + 1, 2: 13, 3: gw.now()}), -1  # other boot
        return code, body, age

    gw.answer = answer

    async def main():
        w1 = await up.step()
        w2 = await up.step()
        check(ring.live == 1 and up.failures == 2, "released on a short ack", up.failures)
        check(100 <= w1 <= 200 and 200 <= w2 <= 400, "exponential backoff", w1, w2)
        check(await up.step() == 0 and ring.live == 0, "not released on a good ack")
        await done(gw, up)

    run(main())
    bodies = [p for _, p in gw.bodies]
    check(bodies[0] == bodies[1] == bodies[2], "the retry is not the same bytes")


def test_503_waits_max_age():
    ring, gw, up, _ = setup([lambda boot: batch(boot, 0)])
    gw.answer = lambda b: gw.error(0xA3, "spool full", 2)

    async def main():
        waits = []
        for _ in range(12):
            waits.append(await up.step())
        gw.answer = lambda b: gw.error(0xA3, "spool full")  # no Max-Age: 60 s
        w60 = await up.step()
        await done(gw, up)
        return waits, w60

    waits, w60 = run(main())
    metric("wait_ms_for_503_max_age_2_min_max", str(min(waits)) + "/" + str(max(waits)))
    check(min(waits) >= 2000 and max(waits) <= 2200, "5.03 wait out of [2 s, 2.2 s]", waits)
    check(len(set(waits)) > 1, "no jitter", waits)
    check(60000 <= w60 <= 66000, "5.03 without Max-Age", w60)
    check(ring.live == 1 and up.backoffs == 13 and up.failures == 0, up.backoffs)
    check(up.last_error == "5.03 spool full", up.last_error)


def test_429_max_age_or_exponential():
    ring, gw, up, _ = setup([lambda boot: batch(boot, 0)])
    gw.answer = lambda b: gw.error(0x9D, "rate", 3)

    async def main():
        w = await up.step()
        check(3000 <= w <= 3300, "4.29 with Max-Age 3", w)
        gw.answer = lambda b: gw.error(0x9D, "rate")
        ws = []
        for _ in range(5):
            ws.append(await up.step())
        check(100 <= ws[0] <= 200 and 500 <= ws[3] <= 1000 and ws[4] <= 1000, ws)
        check(ring.live == 1 and up.backoffs == 6, "4.29 is not poison", up.backoffs)
        await done(gw, up)

    run(main())


def test_4xx_quarantines():
    recs = [
        lambda boot: batch(boot, 0, (2,)),
        lambda boot: batch(boot, 2, (5,), metric_name=b"Bad"),
        lambda boot: batch(boot, 7, (1,)),
    ]
    ring, gw, up, events = setup(recs)

    def answer(b):
        if b[3] == 2:
            return gw.error(0x96, "metric name does not match at series[0].metric")
        return gw.ack(b)

    gw.answer = answer

    async def main():
        for _ in range(3):
            check(await up.step() == 0, up.last_error)
        await done(gw, up)

    run(main())
    check(ring.live == 0 and up.acked == 2 and up.quarantined_records == 1, up.acked)
    check(up.quarantined == 5, "quarantined readings", up.quarantined)
    check(up.last_error == "4.22 metric name does not match at series[0].metric", up.last_error)
    check(len(gw.bodies) == 3, "the poison record was sent again")
    q = [e for e in events if e[0] == uplink.QUARANTINED]
    check(q == [(uplink.QUARANTINED, ring.boot, 1, 5)], q)


def test_4xx_about_the_target_is_not_poison():
    # 4.08 (Block1 transfer lost), 4.01 4.03 4.04 4.05: not the record's fault
    ring, gw, up, _ = setup([lambda boot: batch(boot, 0)])
    codes = [0x88, 0x81, 0x83, 0x84, 0x85]
    gw.answer = lambda b: gw.error(codes[len(gw.bodies) - 1], "not you")

    async def main():
        for _ in codes:
            await up.step()
        await done(gw, up)

    run(main())
    check(ring.live == 1 and up.quarantined_records == 0, up.quarantined_records)
    check(up.failures == 5 and up.last_error == "4.05 not you", up.failures, up.last_error)


def test_unreadable_record_is_quarantined_unsent():
    _ring, gw, up, _ = setup([lambda boot: b"\xff\xff", lambda boot: batch(boot, 0)])

    async def main():
        check(await up.step() == 0 and up.quarantined_records == 1, up.last_error)
        check(await up.step() == 0 and up.acked == 1, up.last_error)
        await done(gw, up)

    run(main())
    check(len(gw.bodies) == 1 and up.quarantined == 0, len(gw.bodies))


def test_timeout_releases_nothing_and_backs_off():
    ring, gw, up, _ = setup([lambda boot: batch(boot, 0)], ack_timeout_ms=20)
    gw.answer = lambda b: None  # silence: the handler below drops the request

    def silent(peer, m, t):
        pass

    gw.peer.handler = silent

    async def main():
        ws = []
        for _ in range(4):
            ws.append(await up.step())
        await done(gw, up)
        return ws

    ws = run(main())
    check(ring.live == 1 and up.failures == 4 and up.client.timeouts == 4, up.failures)
    check(up.retransmits == 8 and up.last_error == "timeout", up.retransmits, up.last_error)
    check(100 <= ws[0] <= 200 and 400 <= ws[2] <= 800 and 500 <= ws[3] <= 1000, ws)


mptest.run(
    [
        test_summary_counts_readings,
        test_ack_releases_in_order,
        test_ack_that_does_not_cover_is_a_failure,
        test_503_waits_max_age,
        test_429_max_age_or_exponential,
        test_4xx_quarantines,
        test_4xx_about_the_target_is_not_poison,
        test_unreadable_record_is_quarantined_unsent,
        test_timeout_releases_nothing_and_backs_off,
    ]
)
