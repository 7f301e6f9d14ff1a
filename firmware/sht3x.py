"""Sensirion SHT3x (SHT30, SHT31, SHT35) temperature and humidity over machine.I2C.

Single-shot measurements with clock stretching disabled, split in two so an asyncio
sampler sleeps instead of blocking the bus:

    s = SHT3x(i2c)                       # ADDR pin low: 0x44; high: ADDR_HIGH (0x45)
    await asyncio.sleep_ms(s.start())    # command 0x2400 (high repeatability), then wait
                                         # 16 ms: datasheet maximum 15 ms + 1 ms tick slack
    s.read_into(out)                     # out[0] = centi-°C, out[1] = centi-%RH
                                         # (or s.read(), then s.t / s.rh, s.value(i))

`start()` and `read()` / `read_into()` allocate nothing (firmware/tests/t_sht3x.py measures
it): the command bytes are constants, the 6-byte frame buffer is the driver's own, and the
results are small ints kept in `t` / `rh` or stored into the caller's array.

The frame is T msb, T lsb, CRC, RH msb, RH lsb, CRC. Each CRC-8 (polynomial 0x31, init
0xFF, no reflection, no final XOR) is checked; a mismatch raises CRCError (an OSError, so
one `except OSError` in the sampler covers every lost sample) and counts in `crc_errors`.
A missing or busy part NACKs its address and machine.I2C raises OSError (ESP32: ENODEV or
ETIMEDOUT; RP2040 hardware I2C: EIO; SoftI2C: ENODEV); that propagates and counts in
`bus_errors`. A read before the measurement is done NACKs too: the part only answers its
read header once data is ready (no clock stretching). A failed read leaves `t` and `rh`
at the last good values.

Conversion (datasheet section 4.13), in integers only, rounded to the nearest unit:
    T  = -45 + 175 * raw / 65535  °C    ->  t  = -4500 + round(17500 * raw / 65535)
    RH = 100 * raw / 65535        %RH   ->  rh = round(10000 * raw / 65535)
65535 = 5 * 13107 and 17500 = 5 * 3500, 10000 = 5 * 2000, so the code divides by the odd
13107: its products stay below 2**28 (a small int, so no allocation, on the 32-bit ports
where small ints end at 2**30) and no quotient lies exactly halfway between two integers,
so `(x + 6553) // 13107` rounds to nearest without a tie rule. Truncating instead would
bias readings low by half a unit (0.005 °C) on average.
"""

import time

from micropython import const

ADDR_LOW = const(0x44)  # ADDR pin to VSS: the default on most breakouts
ADDR_HIGH = const(0x45)  # ADDR pin to VDD

FIELDS = ("t", "rh")  # value(0), value(1): the sources "sht3x.t" and "sht3x.rh"
EXP = const(2)  # both fields are in hundredths: centi-degrees Celsius, centi-percent RH

HIGH = const(0)  # repeatability, an index into the tables below
MEDIUM = const(1)
LOW = const(2)

# Single shot, clock stretching disabled: command 0x24xx, and the maximum measurement
# duration in ms (datasheet Table 4), by repeatability.
_MEAS_LSB = b"\x00\x0b\x16"
_MEAS_MAX_MS = b"\x0f\x06\x04"

_CMD_SOFT_RESET = b"\x30\xa2"
_CMD_STATUS = b"\xf3\x2d"
_CMD_CLEAR_STATUS = b"\x30\x41"
_CMD_HEATER_ON = b"\x30\x6d"
_CMD_HEATER_OFF = b"\x30\x66"
_CMD_SERIAL = b"\x37\x80"

RESET_MS = const(2)  # soft reset time, datasheet maximum 1.5 ms
_CMD_MS = const(1)  # between a command and its read-out (status, serial number)

# Status register bits (datasheet Table 17).
STATUS_ALERT = const(0x8000)
STATUS_HEATER = const(0x2000)
STATUS_RH_ALERT = const(0x0800)
STATUS_T_ALERT = const(0x0400)
STATUS_RESET = const(0x0010)  # a reset happened since the last clear_status()
STATUS_CMD_FAILED = const(0x0002)  # the last command was invalid or failed its checksum
STATUS_WRITE_CRC = const(0x0001)

_EIO = const(5)


class CRCError(OSError):
    """A word's CRC-8 did not match: the frame is discarded (noise, a loose wire)."""


def crc8(buf, start=0, n=2):
    """Sensirion CRC-8 of buf[start:start + n]: polynomial 0x31, init 0xFF, MSB first,
    no final XOR. crc8(b"\\xbe\\xef") == 0x92 (datasheet example)."""
    crc = 0xFF
    for i in range(start, start + n):
        crc ^= buf[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def t_centi(raw):
    """Raw 16-bit temperature to centi-degrees Celsius, rounded: 0 -> -4500, 65535 -> 13000."""
    return -4500 + (3500 * raw + 6553) // 13107


def rh_centi(raw):
    """Raw 16-bit humidity to centi-percent RH, rounded: 0 -> 0, 65535 -> 10000."""
    return (2000 * raw + 6553) // 13107


class SHT3x:
    """One SHT3x on a machine.I2C (or SoftI2C, or simi2c.SimI2C) bus.

    After a good read, `t` is centi-degrees Celsius and `rh` centi-percent RH. Counters:
    `reads` good frames, `crc_errors` frames dropped for a CRC mismatch, `bus_errors`
    OSErrors from the bus (NACK, timeout) on any command or read.
    """

    def __init__(self, i2c, addr=ADDR_LOW, repeatability=HIGH):
        if addr != ADDR_LOW and addr != ADDR_HIGH:
            raise ValueError("SHT3x address is 0x44 or 0x45")
        if not HIGH <= repeatability <= LOW:
            raise ValueError("repeatability is HIGH, MEDIUM or LOW")
        self._i2c = i2c
        self.addr = addr
        self._meas = bytes((0x24, _MEAS_LSB[repeatability]))
        # asyncio wakes on ticks_ms: a wait of n ticks that starts just before a tick
        # lasts a little over n - 1 ms, so one more tick covers the datasheet maximum.
        self.wait_ms = _MEAS_MAX_MS[repeatability] + 1
        self._buf = bytearray(6)
        self.t = 0
        self.rh = 0
        self.reads = 0
        self.crc_errors = 0
        self.bus_errors = 0

    def _cmd(self, cmd):
        try:
            acks = self._i2c.writeto(self.addr, cmd)
        except OSError:
            self.bus_errors += 1
            raise
        # machine.I2C reports a NACKed data byte only in the count of ACKs (the part NACKs
        # a command it does not know).
        if acks != 2:
            self.bus_errors += 1
            raise OSError(_EIO)

    def _read(self, buf):
        try:
            self._i2c.readfrom_into(self.addr, buf)
        except OSError:
            self.bus_errors += 1
            raise
        i = 0
        while i < len(buf):
            if crc8(buf, i) != buf[i + 2]:
                self.crc_errors += 1
                raise CRCError(_EIO)
            i += 3

    def start(self):
        """Start one measurement; returns `wait_ms`, the ms to wait before read()."""
        self._cmd(self._meas)
        return self.wait_ms

    def read(self):
        """Fetch the measurement `start()` began into `t` and `rh`. Raises OSError (NACK:
        not ready, or no part) or CRCError; either way `t` and `rh` keep their values."""
        buf = self._buf
        self._read(buf)
        self.t = t_centi((buf[0] << 8) | buf[1])
        self.rh = rh_centi((buf[3] << 8) | buf[4])
        self.reads += 1

    def read_into(self, out, i=0):
        """read(), then out[i] = t, out[i + 1] = rh (e.g. an array("i", 2) or ("h", 2):
        -4500..13000 and 0..10000 fit 16 bits)."""
        self.read()
        out[i] = self.t
        out[i + 1] = self.rh

    def value(self, i):
        """Field i of the last good read (see field()): 0 t, 1 rh."""
        return self.rh if i else self.t

    def field(self, name):
        """The index value() takes for a field name of the `sht3x.<name>` sources."""
        if name not in FIELDS:
            raise ValueError("SHT3x fields are t and rh")
        return FIELDS.index(name)

    def exponent(self, name):
        """value = reading * 10**-exponent; sensor.SOURCES lists the same exponents."""
        self.field(name)
        return EXP

    def measure(self):
        """start(), sleep, read(): blocking, for the REPL and start-up checks."""
        self.start()
        time.sleep_ms(self.wait_ms)
        self.read()

    def reset(self):
        """Soft reset (0x30A2): heater off, status back to its power-on value
        (STATUS_ALERT | STATUS_RESET). Blocks RESET_MS for the part to come back."""
        self._cmd(_CMD_SOFT_RESET)
        time.sleep_ms(RESET_MS)

    def status(self):
        """The 16-bit status register (STATUS_* bits)."""
        self._cmd(_CMD_STATUS)
        time.sleep_ms(_CMD_MS)
        buf = bytearray(3)
        self._read(buf)
        return (buf[0] << 8) | buf[1]

    def clear_status(self):
        """Clear the alert and reset flags in the status register."""
        self._cmd(_CMD_CLEAR_STATUS)

    def heater(self, on):
        """The on-chip heater (a few °C of self-heating, for condensation tests); a reset
        turns it off. Leave it off for measurements."""
        self._cmd(_CMD_HEATER_ON if on else _CMD_HEATER_OFF)

    def serial(self):
        """The part's 32-bit serial number (command 0x3780)."""
        self._cmd(_CMD_SERIAL)
        time.sleep_ms(_CMD_MS)
        buf = bytearray(6)
        self._read(buf)
        return (buf[0] << 24) | (buf[1] << 16) | (buf[3] << 8) | buf[4]
