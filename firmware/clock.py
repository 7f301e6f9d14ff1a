"""The device clock: microseconds since this boot, monotonic, never wrapping.

Batches carry times on this clock (`t0`, CDDL `telemetry-batch`), and the uplink estimates
its offset to wall time from the gateway's time in replies. MicroPython's `ticks_us` wraps
every 2**30 µs on the boards (about 18 minutes); `ticks_ms` every 2**30 ms (12 days). Each
read adds the `ticks_us` step, and the `ticks_ms` step says how many whole wraps it cannot
show, so the clock stays right as long as it is read at least once every 6 days.

On 32-bit ports the value outgrows a small int after 18 minutes, so a read allocates: read
it once per batch or exchange, never per sample (samples carry `ticks_ms` offsets).
"""

import time

# the ticks period: 2**30 on the boards, 2**62 on the 64-bit unix port (a long int on both,
# only compared against: the usual read does small-int arithmetic and allocates nothing)
_PERIOD = time.ticks_add(0, -1) + 1  # type: ignore[type-var]
_HALF = _PERIOD // 2


class DeviceClock:
    def __init__(self):
        self._us = 0
        self._last_us = time.ticks_us()
        self._last_ms = time.ticks_ms()

    def now_us(self):
        t_us = time.ticks_us()
        t_ms = time.ticks_ms()
        step = time.ticks_diff(t_us, self._last_us)
        if step < 0:
            step += _PERIOD  # more than half a period since the last read
        missed = time.ticks_diff(t_ms, self._last_ms) * 1000 - step
        if missed > _HALF:
            # whole ticks_us periods the step cannot show; ticks_ms saw them
            step += ((missed + _HALF) // _PERIOD) * _PERIOD
        self._last_us = t_us
        self._last_ms = t_ms
        self._us += step
        return self._us

    def us_at(self, t_ms):
        """The device time (µs) of a recent ticks_ms() reading, to the millisecond."""
        return self.now_us() - 1000 * time.ticks_diff(time.ticks_ms(), t_ms)
