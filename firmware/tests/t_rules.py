"""Edge rules (rules.py): keep_every, deadband with heartbeat, the EWMA anomaly rule, and
no allocation per sample."""

import gc

import mptest
from mptest import check, metric
from rules import ANOMALY, KEEP, MetricRules, alpha_shift


def _kept(rules, values):
    return [v for v in values if rules.offer(v) & KEEP]


def test_alpha_is_the_nearest_power_of_two():
    check(alpha_shift(1) == 0 and alpha_shift(0.5) == 1, alpha_shift(0.5))
    check(alpha_shift(0.05) == 4, alpha_shift(0.05))  # 1/16 is nearer than 1/32
    check(alpha_shift(0.03) == 5, alpha_shift(0.03))


def test_deadband_keeps_first_changes_and_heartbeat():
    r = MetricRules(deadband=5, heartbeat=4)
    got = _kept(r, [100, 101, 104, 105, 105, 99, 99, 99, 99, 99, 99])
    # 100 first; 105 differs by 5; 99 by 6; then three unkept 99s and the fourth is a heartbeat
    check(got == [100, 105, 99, 99], got)


def test_zero_deadband_keeps_everything():
    r = MetricRules()
    vals = [3, 3, 3, -7, 3]
    check(_kept(r, vals) == vals)


def test_keep_every_looks_at_one_of_n():
    r = MetricRules(keep_every=3)
    got = _kept(r, list(range(12)))
    check(got == [2, 5, 8, 11], got)


def test_anomaly_trips_on_a_spike_not_on_noise():
    r = MetricRules(deadband=1000, anomaly_z=4, alpha=0.05, warmup=20, heartbeat=10000)
    seed = 12345
    tripped = 0
    for _ in range(500):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        f = r.offer(2100 + (seed >> 16) % 21 - 10)  # 21.00 °C +- 0.10
        tripped += 1 if f & ANOMALY else 0
    check(tripped == 0, "noise tripped the rule", tripped, "times")
    f = r.offer(2100 + 300)  # +3 °C
    check(f & ANOMALY and f & KEEP, "a spike must trip and be kept", f)
    check(r.anomalies == 1)


def test_no_trip_during_warmup():
    r = MetricRules(anomaly_z=3, warmup=10)
    for v in (0, 0, 0, 0, 1000, 0, 0):
        check(not r.offer(v) & ANOMALY, "tripped during warm-up")


def test_offer_allocates_nothing():
    r = MetricRules(deadband=3, keep_every=2, anomaly_z=4, warmup=5, heartbeat=7)
    for v in range(50):
        r.offer(2000 + v % 9)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for v in range(2000):
            r.offer(2000 + v % 9)
        grew = gc.mem_alloc() - before
    finally:
        gc.enable()
    metric("rules_heap_bytes_per_2000_samples", grew)
    check(grew == 0, "offer allocated", grew)


mptest.run(
    [
        test_alpha_is_the_nearest_power_of_two,
        test_deadband_keeps_first_changes_and_heartbeat,
        test_zero_deadband_keeps_everything,
        test_keep_every_looks_at_one_of_n,
        test_anomaly_trips_on_a_spike_not_on_noise,
        test_no_trip_during_warmup,
        test_offer_allocates_nothing,
    ]
)
