"""A simulated I2C bus and a register-level SHT3x behind it: the unix port's sensor
(hal_unix.i2c()) and the tests' hardware.

SimI2C has the machine.I2C methods the drivers use: writeto (returns the count of ACKed
bytes), readfrom_into and scan. An address nobody answers raises OSError(ENODEV = 19), as
SoftI2C and the ESP32's I2C do (the RP2040's hardware I2C raises EIO = 5 instead; the
drivers treat any OSError alike).

SHT3xSim answers the commands the datasheet lists for single-shot mode, like the part:
- a measurement command (0x2400 / 0x240B / 0x2416) samples at once and keeps the part
  busy for the datasheet maximum (15 / 6 / 4 ms); while busy it NACKs its address, so a
  read that comes too early raises OSError, as on the real part without clock stretching;
- the data can be read once: a second read with no new command NACKs;
- status (0xF32D), clear status (0x3041), heater on/off (0x306D / 0x3066), serial number
  (0x3780), soft reset (0x30A2; its 1.5 ms recovery is not modelled); any other command
  NACKs its second byte (writeto returns 1) and sets STATUS_CMD_FAILED;
- every word carries the CRC-8 the part computes, written here independently of the
  driver's (a nibble table), so a wrong CRC in either is caught.

The readings are a pure function of the seed and the time since the model was made (its
`clock`, default time.ticks_ms): temperature about 20..23 °C over a 24 h cycle (a pair of
parabolas, close to a sine: coldest 03:00, warmest 15:00 if the model starts at 09:00),
humidity about 44..56 %RH moving the other way, each with up to ±0.08 °C / ±0.16 %RH of
noise from a 16-bit LCG keyed on the seed and the time. `t` and `rh` hold the truth of the
last measurement in centi-units: a driver that reads and converts correctly reports exactly
these.

Faults, set by tests (or over mpremote on the virtual board):
- `nack = True`: the part stops answering (unplugged, dead); scan() no longer lists it;
- `bad_crc = n`: the next n measurement reads carry one bad CRC (alternately the
  temperature's and the humidity's); -1: every read;
- `stuck = True`: measurements keep returning the last reading (a frozen sensor);
- `t_offset`, `rh_offset`: centi-units added to the truth (steps, spikes).

Measuring and reading allocate nothing (integer arithmetic, one 6-byte buffer), so the
driver's hot path can be measured through it. Some products exceed 2**30, the small-int
limit of the 32-bit ports: the model is for the unix port (64-bit), not for a board.
"""

import time

from micropython import const

ENODEV = const(19)  # what SoftI2C / ESP32 raise for an address nobody ACKs

STATUS_ALERT = const(0x8000)
STATUS_HEATER = const(0x2000)
STATUS_RESET = const(0x0010)
STATUS_CMD_FAILED = const(0x0002)
_STATUS_CLEARABLE = const(0x8C10)  # alert, RH/T alert, reset detected

_DAY_S = const(86400)
_HALF_DAY_S = const(43200)
_START_S = const(32400)  # the cycle starts at 09:00: coldest at 03:00, warmest at 15:00

# CRC-8 (0x31) of a nibble, MSB first: the table-driven form of the part's CRC.
_CRC_NIBBLE = b"\x00\x31\x62\x53\xc4\xf5\xa6\x97\xb9\x88\xdb\xea\x7d\x4c\x1f\x2e"


def _crc_byte(c, b):
    c ^= b
    c = ((c << 4) & 0xFF) ^ _CRC_NIBBLE[c >> 4]
    return ((c << 4) & 0xFF) ^ _CRC_NIBBLE[c >> 4]


def _crc(hi, lo):
    return _crc_byte(_crc_byte(0xFF, hi), lo)


def _lcg(x):
    return (x * 25173 + 13849) & 0xFFFF


class SimI2C:
    """The machine.I2C subset the drivers use, over the devices attach()ed to it."""

    def __init__(self):
        self._devs = {}

    def attach(self, dev):
        self._devs[dev.addr] = dev
        return dev

    def device(self, addr):
        return self._devs[addr]

    def _dev(self, addr):
        d = self._devs.get(addr)
        if d is None or d.nack:
            raise OSError(ENODEV)
        return d

    def scan(self):
        found = []
        for a in sorted(self._devs):
            if self._devs[a].acks():
                found.append(a)
        return found

    def writeto(self, addr, buf, stop=True):
        return self._dev(addr).write(buf)

    def readfrom_into(self, addr, buf, stop=True):
        self._dev(addr).read(buf)


class SHT3xSim:
    """An SHT3x at `addr` (0x44 or 0x45) whose readings depend on `seed` and `clock`, a
    ticks_ms-like function (tests pass a stepping one)."""

    def __init__(self, addr=0x44, seed=1, clock=time.ticks_ms):
        self.addr = addr
        self.seed = seed & 0xFFFF
        self._clock = clock
        self.nack = False
        self.bad_crc = 0
        self.stuck = False
        self.t_offset = 0
        self.rh_offset = 0
        self.t = 0
        self.rh = 0
        self.measurements = 0
        self.status = STATUS_ALERT | STATUS_RESET  # the power-on value
        self._out = bytearray(6)
        self._n = 0  # bytes waiting to be read; 0: a read NACKs
        self._is_meas = False
        self._busy = False
        self._ready = 0
        self._bad = 0  # bad CRCs sent: even -> corrupt the temperature's, odd the humidity's
        self._last = clock()
        self._s = 0  # time since creation: whole seconds and the ms remainder
        self._ms = 0

    def acks(self):
        if self._busy:
            if time.ticks_diff(self._clock(), self._ready) < 0:
                return False
            self._busy = False
        return not self.nack

    def _word(self, i, w):
        out = self._out
        out[i] = w >> 8
        out[i + 1] = w & 0xFF
        out[i + 2] = _crc(w >> 8, w & 0xFF)

    def write(self, buf):
        if not self.acks():
            raise OSError(ENODEV)
        if len(buf) < 2:
            return len(buf)
        cmd = (buf[0] << 8) | buf[1]
        self._n = 0  # any command discards unread data
        self._is_meas = False
        if cmd == 0x2400 or cmd == 0x240B or cmd == 0x2416:
            self._measure()
            self._busy = True
            self._ready = time.ticks_add(
                self._clock(), 15 if cmd == 0x2400 else 6 if cmd == 0x240B else 4
            )
        elif cmd == 0xF32D:
            self._word(0, self.status)
            self._n = 3
        elif cmd == 0x3041:
            self.status &= ~_STATUS_CLEARABLE
        elif cmd == 0x306D:
            self.status |= STATUS_HEATER
        elif cmd == 0x3066:
            self.status &= ~STATUS_HEATER
        elif cmd == 0x3780:
            self._word(0, 0x5EED)
            self._word(3, self.seed)
            self._n = 6
        elif cmd == 0x30A2:
            self.status = STATUS_ALERT | STATUS_RESET
        else:
            self.status |= STATUS_CMD_FAILED
            return 1
        self.status &= ~STATUS_CMD_FAILED
        return 2

    def read(self, buf):
        if not self.acks() or self._n == 0:
            raise OSError(ENODEV)
        out = self._out
        n = self._n
        for i in range(len(buf)):
            buf[i] = out[i] if i < n else 0xFF  # past the data the bus floats high
        self._n = 0
        if self._is_meas and self.bad_crc:
            k = 2 if self._bad & 1 == 0 else 5
            if k < len(buf):
                buf[k] ^= 0x5A
            self._bad += 1
            if self.bad_crc > 0:
                self.bad_crc -= 1

    def _measure(self):
        now = self._clock()
        ms = self._ms + time.ticks_diff(now, self._last)
        self._last = now
        self._s += ms // 1000
        self._ms = ms % 1000
        self.measurements += 1
        self._n = 6
        self._is_meas = True
        if self.stuck:
            return
        s = (self._s + _START_S) % _DAY_S
        u = (s % _HALF_DAY_S) * 1024 // _HALF_DAY_S
        w = (u * (1024 - u)) >> 8  # 0..1024, peak mid half-day
        if s >= _HALF_DAY_S:
            w = -w
        x = _lcg(_lcg(((self._s & 0x3FFF) * 1000 + self._ms) ^ self.seed))
        y = _lcg(x)
        t = 2150 + (w * 150 >> 10) + (x >> 12) - 8 + self.t_offset
        rh = 5000 - (w * 600 >> 10) + (y >> 11) - 16 + self.rh_offset
        t = -4500 if t < -4500 else 13000 if t > 13000 else t
        rh = 0 if rh < 0 else 10000 if rh > 10000 else rh
        self.t = t
        self.rh = rh
        # the raw words whose conversion is t and rh: nearest to the inverse of the
        # datasheet formulas (a raw step is 0.027 °C or 0.015 %RH, so rounding lands inside)
        self._word(0, ((t + 4500) * 13107 + 1750) // 3500)
        self._word(3, (rh * 13107 + 1000) // 2000)
