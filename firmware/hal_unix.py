"""Board HAL for the MicroPython unix port (tests and the virtual board).

Flash is the NOR emulator (noremu.py), which fails like the chip. The sensor is simulated
and can be told to stop answering; the network is a link flag the test flips.
"""

import time

from micropython import const
from noremu import NorFlash

FLASH_PATH = "ringtail-flash.img"
SECTOR_SIZE = const(4096)  # as on the ESP32 and RP2040 parts
SECTOR_COUNT = const(64)  # a 256 KiB partition

_EIO = const(5)


def flash(path=FLASH_PATH, sector_size=SECTOR_SIZE, sector_count=SECTOR_COUNT, fresh=False):
    return NorFlash(path, sector_size, sector_count, fresh)


class SimSensor:
    """A deterministic 16-bit big-endian reading (a slow sawtooth with a wobble), like a
    typical I2C part's register pair. `fail = True` makes it stop answering."""

    def __init__(self, seed=1):
        self._n = seed & 0xFFFF
        self.fail = False
        self.reads = 0

    def read_into(self, buf):
        if self.fail:
            raise OSError(_EIO)
        self.reads += 1
        n = self._n
        self._n = (n + 37) & 0xFFFF
        v = (n + ((n * 7) & 0x3F)) & 0xFFFF
        for i in range(len(buf)):
            buf[i] = (v >> 8) if i & 1 == 0 else (v & 0xFF)


def sensor(seed=1):
    return SimSensor(seed)


def ticks_ms():
    return time.ticks_ms()


def epoch_s():
    return time.time()


class _Link:
    up = False
    reachable = True  # set False to simulate an access point that is gone


LINK = _Link()


def net_up(ssid="", key="", timeout_ms=10000):
    LINK.up = LINK.reachable
    return LINK.up


def net_down():
    LINK.up = False


def net_is_up():
    return LINK.up
