"""A batch window: the kept samples of every metric, and the telemetry batches they become.

Samples go into arrays allocated once (`add` allocates nothing). `next_record` encodes the
metrics as codec blocks in decimal mode (values are integers in the metric's units, value =
count / 10**exp: exact on ports whose floats are single precision) and writes a batch
(protocol/telemetry.cddl, `telemetry-batch`) into one buffer: that buffer is the ring
record, and later the CoAP payload, byte for byte.

Size: a record is at most `record_max` bytes (default 1024, one CoAP datagram). Blocks of
sensor data take a few bits per point, so a whole window nearly always fits; when it does
not, the window is split: the first half of every metric's points is tried, and so on, and
the rest follows in the next record. Each record is a complete batch with its own seq.

Reading k of a batch (series in order, points in order) has seq = batch seq + k.
"""

from array import array

from cbor import CborError, Encoder
from micropython import const
from tsenc import Encoder as BlockEncoder

MAX_WINDOW_US = const(2_000_000_000)  # offsets are int32 µs: a window closes by 2000 s


class Window:
    def __init__(self, device, names, exps, points=64, record_max=1024):
        self._device = device.encode()
        self._names = [n.encode() for n in names]
        self._exps = exps
        m = len(names)
        self.points = points  # per metric: the window is full when one metric has this many
        # per metric: µs offsets from the window's start (32-bit: a window is at most
        # MAX_WINDOW_US long), and values in the metric's units; "i" items read back as
        # small ints, so encoding allocates next to nothing per point
        self._us = [array("i", bytes(4 * points)) for _ in range(m)]
        self._val = [array("i", bytes(4 * points)) for _ in range(m)]
        self._n = array("H", bytes(2 * m))
        self._a = array("H", bytes(2 * m))  # next point of each metric to emit
        self._b = array("H", bytes(2 * m))  # end of the part being tried
        self.count = 0
        self._codec = BlockEncoder(points)
        self.buf = bytearray(record_max)
        self._enc = Encoder(self.buf)
        self.t0 = 0
        self.opened_ms = 0

    def open(self, t0_us, now_ms):
        """Start an empty window at device time t0_us (µs), ticks_ms now_ms."""
        self.t0 = t0_us
        self.opened_ms = now_ms
        for i in range(len(self._n)):
            self._n[i] = 0
            self._a[i] = 0
        self.count = 0

    def room(self, i):
        """True while metric i can take another sample."""
        return self._n[i] < self.points

    def add(self, i, offset_us, v):
        """Keep sample v of metric i, taken offset_us after open() (< MAX_WINDOW_US); room(i)
        must be True."""
        k = self._n[i]
        self._us[i][k] = offset_us
        self._val[i][k] = v
        self._n[i] = k + 1
        self.count += 1

    def next_record(self, boot, seq, clock):
        """The next batch of points not yet emitted, its first reading numbered `seq`, with
        `clock` None or (offset_us, uncertainty_us): (record, readings), the record a view
        of self.buf valid until the next call; (None, 0) when every point is out."""
        a, b, n = self._a, self._b, self._n
        left = False
        for i in range(len(n)):
            b[i] = n[i]
            left = left or a[i] < n[i]
        if not left:
            return None, 0
        while True:
            try:
                readings = self._encode(boot, seq, clock)
                break
            except CborError:
                # too big for one record: try half of what is left of every metric
                halved = False
                for i in range(len(n)):
                    k = b[i] - a[i]
                    if k > 1:
                        b[i] = a[i] + k // 2
                        halved = True
                if not halved:
                    raise
        for i in range(len(n)):
            a[i] = b[i]
        return self._enc.view(), readings

    def _encode(self, boot, seq, clock):
        a, b = self._a, self._b
        enc = self._enc
        enc.reset()
        enc.put_map(7 if clock else 6)
        enc.put_int(0)
        enc.put_int(1)
        enc.put_int(1)
        enc.put_utf8(self._device)
        enc.put_int(2)
        enc.put_int(boot)
        enc.put_int(3)
        enc.put_int(seq)
        enc.put_int(4)
        enc.put_int(self.t0)
        if clock:
            enc.put_int(5)
            enc.put_array(2)
            enc.put_int(clock[0])
            enc.put_int(clock[1])
        enc.put_int(6)
        series = 0
        for i in range(len(a)):
            if b[i] > a[i]:
                series += 1
        enc.put_array(series)
        readings = 0
        for i in range(len(a)):
            lo = a[i]
            k = b[i] - lo
            if k <= 0:
                continue
            block = self._codec.encode_decimal(
                memoryview(self._us[i])[lo : lo + k],
                memoryview(self._val[i])[lo : lo + k],
                self._exps[i],
            )
            enc.put_map(3)
            enc.put_int(0)
            enc.put_utf8(self._names[i])
            enc.put_int(3)
            enc.put_bytes(block)
            enc.put_int(4)
            enc.put_int(k)
            readings += k
        return readings
