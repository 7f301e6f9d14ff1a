"""The agent's sampling path (agent.py) on a real ring over the NOR emulator: what it keeps,
how windows become records, sequence numbers, the health report, and no allocation per
sample. The uplink is not in this test (test_uplink.py and test_device.py run it against
a gateway); here a recorder stands in for it."""

import gc

import micropython
import mptest
from agent import Agent
from cbor import loads
from mptest import check, metric
from noremu import NorFlash
from ring import DROP_OLDEST
from store import open_store
from tscodec import Codec


class RampSource:
    """A sensor with two fields whose value is a function of the reading count, so the
    test knows every sample. start() fails while `fail` is set, as a NACK would."""

    def __init__(self):
        self.n = 0
        self.fail = False
        self.v = [0, 0]

    def field(self, name):
        return ("t", "rh").index(name)

    def exponent(self, name):
        return 2

    def start(self):
        if self.fail:
            raise OSError(19)
        return 15

    def read(self):
        self.n += 1
        self.v[0] = 2000 + self.n
        self.v[1] = 5000 - 7 * self.n

    def value(self, i):
        return self.v[i]


class Recorder:
    retransmits = 0
    quarantined = 0

    def __init__(self):
        self.wakes = 0
        self.clock = None

    def wake(self):
        self.wakes += 1

    def clock_estimate(self):
        return self.clock


class MsClock:
    """Device µs = 1000 * the test's synthetic ticks_ms."""

    def us_at(self, t_ms):
        return 1000 * t_ms

    def now_us(self):
        return 0


def _cfg(batch_s=10, period_ms=1000, deadband=0, keep_every=1, anomaly_z=0):
    metrics = [
        {
            "name": "temperature",
            "source": "ramp.t",
            "period_ms": period_ms,
            "deadband_units": deadband,
            "keep_every": 1,
            "anomaly_z": anomaly_z,
        },
        {
            "name": "humidity",
            "source": "ramp.rh",
            "period_ms": 2 * period_ms,
            "deadband_units": 0,
            "keep_every": keep_every,
            "anomaly_z": 0,
        },
    ]
    return {
        "device": "dev-7",
        "batch_s": batch_s,
        "health_s": 60,
        "metrics": metrics,
        "anomaly": {"alpha": 0.05, "warmup": 5},
    }


def _setup(name, **kw):
    f = NorFlash(mptest.tmpdir() + "/" + name + ".img", 4096, 16, fresh=True)
    ring = open_store(f, DROP_OLDEST)
    up = Recorder()
    src = RampSource()
    a = Agent(_cfg(**kw), ring, up, MsClock(), {"ramp": src})
    return a, ring, up, src


def _run(a, start_ms, until_ms):
    """Drive the sampling loop on synthetic time: each step is what sample_forever does."""
    a.start_sampling(start_ms)
    now = start_ms
    while now < until_ms:
        wait = a.begin(now)
        if wait >= 0:
            a.finish(now + wait)
        now += max(1, _idle(a, now))
    return now


def _idle(a, now):
    wait = a.window.opened_ms + a.batch_ms - now
    for d in a._due:
        if d - now < wait:
            wait = d - now
    return wait


def _decoder():
    # the test's own decoder: room for it only once the agent under test is dropped
    gc.collect()
    return Codec(16)  # windows here hold at most 11 points per metric


def _records(ring):
    ring.rewind()
    buf = bytearray(1024)
    out = []
    while True:
        n = ring.read(buf)
        if n < 0:
            return out
        out.append(loads(bytes(buf[:n])))


def test_windows_become_records_with_contiguous_seqs():
    a, ring, up, _src = _setup("seq")
    _run(a, 1000, 1000 + 35000)  # 35 s: three closed windows of 10 s
    recs = _records(ring)
    check(len(recs) == 3, "records", len(recs))
    total, wakes = a.seq, up.wakes
    a = None
    codec = _decoder()
    seq = 0
    for r in recs:
        check(r[0] == 1 and r[1] == "dev-7" and r[2] == ring.boot, r)
        check(r[3] == seq, "seq", r[3], "expected", seq)
        check(5 not in r, "no clock estimate before the uplink has one")
        names = [s[0] for s in r[6]]
        check(names == ["temperature", "humidity"], names)
        for s in r[6]:
            ts, _ = codec.decode(s[3])
            check(len(ts) == s[4], "count and block disagree")
            for k in range(1, len(ts)):
                check(ts[k] >= ts[k - 1], "offsets must not decrease")
            seq += s[4]
        t = r[6][0]
        ts, _vals = codec.decode(t[3])
        check(t[4] == 10, "temperature at 1 Hz for 10 s", t[4])
        check(ts[1] - ts[0] == 1000000, "1 s apart in µs", ts[1] - ts[0])
    check(total == seq and wakes == 3, total, seq, wakes)


def test_values_are_exact_decimals():
    a, ring, _up, src = _setup("vals")
    _run(a, 0, 10500)
    r = _records(ring)[0]
    a = None
    codec = _decoder()
    _ts, vals = codec.decode(r[6][0][3])
    # the k-th read gives 2000 + k counts = (2000 + k) / 100 °C; reads 1, 2, 3, ... in order
    reads = src.n
    check(reads >= 10, reads)
    check(list(vals[:3]) == [20.01, 20.02, 20.03], list(vals[:3]))
    check(r[4] == 0, "t0 is the window's open time in device µs", r[4])


def test_clock_estimate_travels():
    a, ring, up, _src = _setup("clock")
    up.clock = (1700000000000000, 2500)
    _run(a, 0, 10500)
    r = _records(ring)[0]
    check(r[5] == [1700000000000000, 2500], r.get(5))


def test_deadband_and_keep_every_cut_readings():
    a, ring, _up, _src = _setup("rules", deadband=5, keep_every=2)
    _run(a, 0, 20500)
    recs = _records(ring)
    t = sum(s[4] for r in recs for s in r[6] if s[0] == "temperature")
    h = sum(s[4] for r in recs for s in r[6] if s[0] == "humidity")
    # temperature rises 2-3 counts per second (rh reads count too): about every other kept
    # temperature rises one count per second: deadband 5 keeps the first, then every fifth:
    # s 0, 5, 10, 15 in the two closed windows (s 20 is in the open one)
    check(t == 4, "temperature kept", t)
    check(h == 5, "humidity: one of two of its 11 samples in 20 s", h)
    check(a.sampled == 32, a.sampled)


def test_anomaly_closes_the_window_at_once():
    a, ring, _up, src = _setup("anom", anomaly_z=4, batch_s=60)
    a.start_sampling(0)
    now = 0
    for _ in range(20):
        a.begin(now)
        a.finish(now + 15)
        now += 1000
    check(len(_records(ring)) == 0, "nothing closed before the spike")
    src.n += 500  # the next reading jumps by 5 °C
    a.begin(now)
    a.finish(now + 15)
    recs = _records(ring)
    check(len(recs) == 1 and a.anomalies == 1, len(recs), a.anomalies)


def test_sensor_failure_is_counted_and_skipped():
    a, ring, _up, src = _setup("fail")
    src.fail = True
    _run(a, 0, 5000)
    check(a.sensor_errors >= 5 and a.sampled == 0, a.sensor_errors, a.sampled)
    src.fail = False
    _run(a, 5000, 16000)
    check(a.sampled > 0 and len(_records(ring)) == 1)


def test_health_report():
    a, ring, _up, _src = _setup("health")
    h = loads(bytes(a.health_report()))
    check(h[1] == "dev-7" and h[2] == ring.boot and h[9] is None, h)
    _run(a, 0, 10500)
    h = loads(bytes(a.health_report()))
    check(h[9] == [0, a.seq - 1], h[9], a.seq)
    check(h[6][1] == 14 * 4096 and h[6][0] >= 4096, h[6])
    check(h[4] == 0 and h[11] and h[5] > 0, h)


def test_sampling_allocates_nothing_per_sample():
    a, ring, _up, _src = _setup("alloc", batch_s=1800, period_ms=100)
    a.start_sampling(0)
    now = 0
    for _ in range(10):
        a.begin(now)
        a.finish(now + 15)
        now += 100
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(50):  # 75 samples, short of a full window (64 per metric)
            a.begin(now)
            a.finish(now + 15)
            now += 100
        grew = gc.mem_alloc() - before
    finally:
        gc.enable()
    metric("agent_heap_bytes_per_75_samples", grew)
    check(a.sampled == 90, a.sampled)
    check(grew == 0, "sampling allocated", grew, "bytes")
    # closing a window allocates (64-bit timestamps are long ints, the block is bytes): once
    # per window, collected after; counted with the allocator's running total
    before = micropython.mem_total()
    a.close_window(now)
    metric("agent_bytes_allocated_per_window_close", micropython.mem_total() - before)
    check(len(_records(ring)) == 1)


mptest.run(
    [
        test_windows_become_records_with_contiguous_seqs,
        test_values_are_exact_decimals,
        test_clock_estimate_travels,
        test_deadband_and_keep_every_cut_readings,
        test_anomaly_closes_the_window_at_once,
        test_sensor_failure_is_counted_and_skipped,
        test_health_report,
        test_sampling_allocates_nothing_per_sample,
    ]
)
