"""The device agent: sample, decide, store, send, report.

Three asyncio tasks share one event loop:
- sampling: every metric at its period; edge rules (rules.py) decide what is kept; kept
  samples go into the batch window (batcher.py), which is closed into one ring record when
  it is `batch_s` old, full, or an anomaly trips;
- uplink (uplink.py): sends ring records oldest first and releases each on its ack;
- health: a health report to the gateway every `health_s`.

Sequence numbers are given when a window is stored: the readings of a record are
seq .. seq + n - 1 of this boot, and `sampled` in the health report is the range stored so
far. Samples still in the open window (at most one window, `batch_s`) are lost with the
power; they never had a sequence number, so the audit sees no gap.
"""

import asyncio
import gc
import time

from batcher import MAX_WINDOW_US, Window
from cbor import Encoder
from micropython import const
from rules import ANOMALY, KEEP, MetricRules

FIRMWARE_VERSION = "0.1.0"

_HEALTH_BYTES = const(160)
_WINDOW_POINTS = const(64)  # per metric: a 60 s window at 1 Hz fits
RECORD_BYTES = const(1024)  # a ring record (one batch) at most: one CoAP datagram
_STARTED = const(1)
_READ = const(2)
_FAILED = const(3)
# protocol boot-reason: machine.reset_cause() constants by name, else 255 (unknown)
_REASONS = (
    ("PWRON_RESET", 0),
    ("HARD_RESET", 1),
    ("WDT_RESET", 2),
    ("DEEPSLEEP_RESET", 3),
    ("SOFT_RESET", 4),
    ("BROWNOUT_RESET", 5),
)


def boot_reason():
    try:
        import machine

        cause = machine.reset_cause()
    except (ImportError, AttributeError):
        return 0  # the unix port: every start of the process is a power-on
    for name, code in _REASONS:
        if getattr(machine, name, None) == cause:
            return code
    return 255


class Agent:
    """`sources` maps a source name ("sht3x") to an object with `start()` -> ms until a
    reading is ready, `read()`, `value(index)` (an int in the field's units), and, at set-up
    only, `field(name)` -> index and `exponent(name)` -> e (value = int / 10**e). start and
    read raise OSError when the part fails; the sample is skipped and counted."""

    def __init__(self, cfg, ring, uplink, clock, sources):
        self.cfg = cfg
        self.ring = ring
        self.uplink = uplink
        self.clock = clock
        metrics = cfg["metrics"]
        n = len(metrics)
        self.names = [m["name"] for m in metrics]
        self._src = []
        self._field = []
        exps = []
        for m in metrics:
            sname, fname = m["source"].split(".")
            src = sources[sname]
            self._src.append(src)
            self._field.append(src.field(fname))
            exps.append(src.exponent(fname))
        # each sensor once, in the order the metrics name them
        self._sources = [s for k, s in enumerate(self._src) if s not in self._src[:k]]
        self._measured = bytearray(len(self._sources))  # per source: _STARTED, _READ, _FAILED
        self._isdue = bytearray(n)
        self._src_index = bytearray(n)
        for i in range(n):
            self._src_index[i] = self._sources.index(self._src[i])
        self.batch_ms = cfg["batch_s"] * 1000
        if self.batch_ms * 1000 > MAX_WINDOW_US:
            raise ValueError("batch_s beyond what a window's 32-bit µs offsets span")
        an = cfg["anomaly"]
        self.rules = []
        for m in metrics:
            self.rules.append(
                MetricRules(
                    deadband=m["deadband_units"],
                    keep_every=m["keep_every"],
                    anomaly_z=m["anomaly_z"],
                    alpha=an["alpha"],
                    warmup=an["warmup"],
                    heartbeat=max(1, self.batch_ms // (m["period_ms"] * m["keep_every"])),
                )
            )
        self.period = [m["period_ms"] for m in metrics]
        self.window = Window(
            cfg["device"], self.names, exps, _WINDOW_POINTS, min(RECORD_BYTES, ring.paymax)
        )
        self._due = [0] * n
        self.seq = 0  # the next reading's sequence number this boot
        self.sampled = 0  # readings sampled (taken from a sensor) this boot
        self.kept = 0
        self.sensor_errors = 0
        self.lost = 0  # readings of windows the ring refused (REFUSE_NEW and full)
        self.anomalies = 0
        self.records = 0
        self._started_ms = time.ticks_ms()
        self._health = bytearray(_HEALTH_BYTES)
        self._henc = Encoder(self._health)
        self._reason = boot_reason()

    # --- sampling ------------------------------------------------------------------------

    async def sample_forever(self):
        self.start_sampling(time.ticks_ms())
        while True:
            # no coroutine is created per sample: sleep_ms reuses one object, the rest is sync
            wait = self.begin(time.ticks_ms())
            if wait >= 0:
                await asyncio.sleep_ms(wait)
                self.finish(time.ticks_ms())
            await asyncio.sleep_ms(self.idle_ms())

    def start_sampling(self, now):
        for i in range(len(self._due)):
            self._due[i] = now
        self.window.open(self.clock.us_at(now), now)

    def idle_ms(self):
        """Milliseconds until the next metric or the window's close is due."""
        now = time.ticks_ms()
        wait = time.ticks_diff(self.window.opened_ms, now) + self.batch_ms
        for d in self._due:
            w = time.ticks_diff(d, now)
            if w < wait:
                wait = w
        return wait if wait > 0 else 0

    def begin(self, now):
        """Close the window if it is `batch_s` old, mark the metrics due at `now` and start
        their sources' measurements. Returns how long to wait before finish() may read them,
        or -1 when nothing is due."""
        if time.ticks_diff(now, self.window.opened_ms) >= self.batch_ms:
            self.close_window(now)
        due = self._due
        isdue = self._isdue
        state = self._measured
        for j in range(len(state)):
            state[j] = 0
        wait = -1
        for i in range(len(due)):
            isdue[i] = 0
            if time.ticks_diff(now, due[i]) < 0:
                continue
            isdue[i] = 1
            # next slot on the period grid; a late tick skips missed slots, never bursts
            nxt = time.ticks_add(due[i], self.period[i])  # type: ignore[type-var]
            if time.ticks_diff(now, nxt) >= 0:
                nxt = time.ticks_add(now, self.period[i])
            due[i] = nxt
            j = self._src_index[i]
            if state[j]:
                continue
            try:
                w = self._sources[j].start()
                state[j] = _STARTED
                if w > wait:
                    wait = w
            except OSError:
                state[j] = _FAILED
                self.sensor_errors += 1
                if wait < 0:
                    wait = 0
        return wait

    def finish(self, now):
        """Read the started sources, offer each due metric's sample to its rules, keep what
        they keep; an anomaly closes the window at once."""
        state = self._measured
        for j in range(len(state)):
            if state[j] == _STARTED:
                try:
                    self._sources[j].read()
                    state[j] = _READ
                except OSError:
                    state[j] = _FAILED
                    self.sensor_errors += 1
        window = self.window
        flush = False
        for i in range(len(self._isdue)):
            if not self._isdue[i] or state[self._src_index[i]] != _READ:
                continue
            self.sampled += 1
            v = self._src[i].value(self._field[i])
            flags = self.rules[i].offer(v)
            if not flags & KEEP:
                continue
            if not window.room(i):
                self.close_window(now)
            window.add(i, time.ticks_diff(now, window.opened_ms) * 1000, v)
            self.kept += 1
            if flags & ANOMALY:
                self.anomalies += 1
                flush = True
        if flush:
            self.close_window(now)

    def close_window(self, now):
        """Store the window as ring records (none when empty) and open the next."""
        window = self.window
        ring = self.ring
        clock = self.uplink.clock_estimate()
        while True:
            record, readings = window.next_record(ring.boot, self.seq, clock)
            if record is None:
                break
            if ring.append(record) >= 0:
                self.seq += readings
                self.records += 1
            else:
                self.lost += readings
        self.uplink.wake()
        window.open(self.clock.us_at(now), now)

    # --- health --------------------------------------------------------------------------

    def health_report(self):
        """The health-report payload (CDDL `health-report`): a view of a reused buffer."""
        ring = self.ring
        up = self.uplink
        enc = self._henc
        enc.reset()
        enc.put_map(13)
        enc.put_int(0)
        enc.put_int(1)
        enc.put_int(1)
        enc.put_text(self.cfg["device"])
        enc.put_int(2)
        enc.put_int(ring.boot)
        enc.put_int(3)
        enc.put_int(time.ticks_diff(time.ticks_ms(), self._started_ms) // 1000)
        enc.put_int(4)
        enc.put_int(self._reason)
        enc.put_int(5)
        enc.put_int(gc.mem_free())
        used, capacity = ring.fill()
        enc.put_int(6)
        enc.put_array(2)
        enc.put_int(used)
        enc.put_int(capacity)
        enc.put_int(7)
        enc.put_int(ring.dropped + ring.refused)
        enc.put_int(8)
        enc.put_int(up.retransmits)
        enc.put_int(9)
        if self.seq:
            enc.put_array(2)
            enc.put_int(0)
            enc.put_int(self.seq - 1)
        else:
            enc.put_null()
        enc.put_int(10)
        enc.put_int(up.quarantined)
        enc.put_int(11)
        enc.put_text(FIRMWARE_VERSION)
        enc.put_int(12)
        enc.put_int(self.clock.now_us())
        return enc.view()

    async def health_forever(self):
        period = self.cfg["health_s"] * 1000
        while True:
            await self.uplink.send_health(self.health_report())
            await asyncio.sleep_ms(period)

    async def run(self):
        # kept: a task nobody references may be collected while it waits
        self._tasks = [
            asyncio.create_task(self.uplink.run()),
            asyncio.create_task(self.health_forever()),
        ]
        await self.sample_forever()
