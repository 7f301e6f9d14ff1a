"""Board HAL for ESP32: flash partition, I2C sensor bus, clock, Wi-Fi station.

The ring gets a data partition of its own (label PARTITION in the partition table), used
raw through esp32.Partition's extended block interface: with an offset, `writeblocks`
programs without erasing and `readblocks` reads any range; ioctl 6 erases one block.
"""

import time

import esp32
import network
from machine import I2C, Pin
from micropython import const

PARTITION = "ringtail"
I2C_ID = const(0)
I2C_SCL = const(22)  # the common DevKit pins
I2C_SDA = const(21)
I2C_FREQ_HZ = const(400_000)

_IOCTL_BLOCK_COUNT = const(4)  # MicroPython block-device protocol
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_BLOCK_ERASE = const(6)


class PartitionFlash:
    """esp32.Partition as the ring's flash: byte-addressed read and program (no erase),
    whole-block erase. Errors from the flash driver arrive as OSError."""

    def __init__(self, label=PARTITION):
        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
        if not found:
            raise ValueError("no data partition labelled " + label)
        p = found[0]
        self._p = p
        self.sector_size = p.ioctl(_IOCTL_BLOCK_SIZE, 0)
        self.sector_count = p.ioctl(_IOCTL_BLOCK_COUNT, 0)

    def read(self, addr, buf):
        ss = self.sector_size
        self._p.readblocks(addr // ss, buf, addr % ss)

    def prog(self, addr, buf):
        ss = self.sector_size
        self._p.writeblocks(addr // ss, buf, addr % ss)

    def erase(self, sector):
        if self._p.ioctl(_IOCTL_BLOCK_ERASE, sector):
            raise OSError(5)


def flash(label=PARTITION):
    return PartitionFlash(label)


def i2c(freq=I2C_FREQ_HZ, ident=""):
    """The sensor bus: hardware I2C0 at I2C_FREQ_HZ on SDA GPIO21 / SCL GPIO22, the usual
    DevKit wiring (MicroPython's own I2C(0) default is SCL 18 / SDA 19). A part that does
    not answer raises OSError(ENODEV), a stuck bus OSError(ETIMEDOUT). The SHT3x runs up
    to 1 MHz; lower `freq` to 100_000 for long wires. `ident` is for the unix port's
    simulated part."""
    return I2C(I2C_ID, scl=Pin(I2C_SCL), sda=Pin(I2C_SDA), freq=freq)


def ticks_ms():
    return time.ticks_ms()


def epoch_s():
    return time.time()


_wlan = network.WLAN(network.STA_IF)


def net_up(ssid, key, timeout_ms=10000):
    """Join `ssid`; True once connected, False after timeout_ms."""
    _wlan.active(True)
    if not _wlan.isconnected():
        _wlan.connect(ssid, key)
    t0 = time.ticks_ms()
    while not _wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), t0) > timeout_ms:
            return False
        time.sleep_ms(100)
    return True


def net_down():
    _wlan.disconnect()
    _wlan.active(False)


def net_is_up():
    return _wlan.isconnected()
