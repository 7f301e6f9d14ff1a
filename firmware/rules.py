"""Edge rules: which samples of a metric are worth sending, and which are alarming.

Per metric, in this order:
1. keep_every N (non-critical metrics only, config.py enforces that): one sample of N is
   looked at, the rest are dropped before any other rule;
2. anomaly: an EWMA of the value and of its squared deviation; after `warmup` samples, a
   sample further than z standard deviations from the mean trips the rule. It is always
   kept and asks the agent to close the batch at once, so the alarm travels now;
3. deadband: a sample is kept when it differs from the last kept one by at least the
   deadband, or when `heartbeat` samples went by unkept, so a flat metric still reports.

All arithmetic is on integers in the metric's own units (e.g. centi-degrees): ports with
single-precision, heap-allocated floats pay nothing per sample. The EWMA weight is a power
of two (alpha = 2**-shift), so updates are shifts; mean and variance carry 8 fraction bits.
Nothing here allocates on 64-bit ports (t_rules.py measures it). On 32-bit ports small ints
end at 2**30: the anomaly products outgrow them, and allocate a transient long, only for a
deviation beyond ~200 units or a standard deviation beyond ~50 (2 °C in centi-degrees).
"""

from micropython import const

KEEP = const(1)
ANOMALY = const(2)

_FRAC = const(8)  # fraction bits of mean and variance


def alpha_shift(alpha):
    """The shift whose weight 2**-shift is nearest to alpha (0 < alpha <= 1)."""
    shift = 0
    while shift < 16 and (1 << (shift + 1)) * alpha <= 1.5:
        # 2**-(shift+1) is nearer to alpha than 2**-shift once alpha <= 0.75 * 2**-shift
        shift += 1
    return shift


class MetricRules:
    def __init__(self, deadband=0, keep_every=1, anomaly_z=0, alpha=0.05, warmup=30, heartbeat=60):
        if deadband < 0 or keep_every < 1 or anomaly_z < 0 or warmup < 1 or heartbeat < 1:
            raise ValueError("rule parameters out of range")
        self.deadband = deadband
        self.keep_every = keep_every
        # compared as squares: deviation**2 * 100 > (10 z)**2 * variance, z to a tenth
        self._z2 = int(anomaly_z * 10 + 0.5) ** 2
        self._shift = alpha_shift(alpha)
        self.warmup = warmup
        self.heartbeat = heartbeat
        self.reset()

    def reset(self):
        self._skip = 0
        self._seen = 0
        self._mean = 0
        self._var = 0
        self._last = 0
        self._unkept = -1  # -1: nothing kept yet, the next sample is
        self.anomalies = 0

    def offer(self, v):
        """Flags for sample v: KEEP to store it, ANOMALY to store it and close the batch."""
        if self.keep_every > 1:
            self._skip += 1
            if self._skip < self.keep_every:
                return 0
            self._skip = 0
        flags = 0
        if self._z2:
            flags = self._anomaly(v)
        if flags or self._unkept < 0 or self._unkept + 1 >= self.heartbeat:
            flags |= KEEP
        else:
            d = v - self._last
            if d >= self.deadband or -d >= self.deadband:
                flags |= KEEP
        if flags:
            self._last = v
            self._unkept = 0
        else:
            self._unkept += 1
        return flags

    def _anomaly(self, v):
        x = v << _FRAC
        if self._seen == 0:
            self._mean = x
            self._seen = 1
            return 0
        d = x - self._mean
        tripped = 0
        if self._seen >= self.warmup:
            # deviation**2 > z**2 * variance, both sides in units**2 * 2**8 * 100
            if (d >> 4) * (d >> 4) * 100 > self._z2 * self._var:
                tripped = ANOMALY
                self.anomalies += 1
        else:
            self._seen += 1
        s = self._shift
        self._mean += d >> s
        self._var += (((d >> 4) * (d >> 4)) - self._var) >> s
        return tripped
