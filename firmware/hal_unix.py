"""Board HAL for the MicroPython unix port (tests and the virtual board).

Flash is the NOR emulator (noremu.py), which fails like the chip. The I2C bus and its
SHT3x are simulated at register level (simi2c.py) and can be told to stop answering or to
corrupt a CRC; the network is a link flag the test flips.
"""

import time
from binascii import crc32

from micropython import const
from noremu import NorFlash
from simi2c import SHT3xSim, SimI2C

FLASH_PATH = "ringtail-flash.img"
SECTOR_SIZE = const(4096)  # as on the ESP32 and RP2040 parts
SECTOR_COUNT = const(64)  # a 256 KiB partition

SHT3X_ADDR = const(0x44)

_bus: SimI2C | None = None


def flash(path=FLASH_PATH, sector_size=SECTOR_SIZE, sector_count=SECTOR_COUNT, fresh=False):
    return NorFlash(path, sector_size, sector_count, fresh)


def i2c(fresh=False, seed=1, clock=time.ticks_ms, ident=""):
    """The board's sensor bus: a simulated I2C bus with a simulated SHT3x at 0x44 (ADDR
    low), whose readings follow `seed` and `clock` (simi2c.py). Like machine.I2C(0), every
    call returns the same bus, so a test can reach the part with
    `hal_unix.i2c().device(SHT3X_ADDR)` and inject faults; `fresh=True` builds a new one
    (`seed` and `clock` only matter when a bus is built). `ident` (the device id, as every
    HAL takes it) picks the seed when given, so virtual boards read different weather."""
    global _bus
    if ident:
        seed = crc32(ident.encode()) & 0xFFFF
    if _bus is None or fresh:
        _bus = SimI2C()
        _bus.attach(SHT3xSim(SHT3X_ADDR, seed, clock))
    return _bus


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
