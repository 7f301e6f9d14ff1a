"""Board HAL for RP2040 (Pico / Pico W): flash region, I2C sensor bus, clock, Wi-Fi.

The ring uses a raw region of the on-board flash through rp2.Flash(start, len). That region
must lie outside the littlefs file system of the MicroPython build (its
MICROPY_HW_FLASH_STORAGE_BYTES); FLASH_START / FLASH_LEN below assume a build whose file
system leaves the last 256 KiB of a 2 MiB chip free. rp2.Flash programs whole 256-byte
pages, so `prog` pads a shorter program with 0xFF: programming 1s is a no-op on NOR, so the
page program changes exactly the bytes asked for.
"""

import time

import rp2
from machine import I2C, Pin
from micropython import const

FLASH_START = const(0x1C0000)  # offset in the chip
FLASH_LEN = const(0x40000)  # 64 sectors of 4 KiB
I2C_ID = const(0)
I2C_SCL = const(5)  # GP5 / GP4: I2C0 on the Pico's default pins
I2C_SDA = const(4)
I2C_FREQ_HZ = const(400_000)

_PAGE = const(256)
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_BLOCK_ERASE = const(6)


class RegionFlash:
    def __init__(self, start=FLASH_START, length=FLASH_LEN):
        f = rp2.Flash(start=start, len=length)
        self._f = f
        self.sector_size = f.ioctl(_IOCTL_BLOCK_SIZE, 0)
        self.sector_count = f.ioctl(_IOCTL_BLOCK_COUNT, 0)
        self._page = bytearray(_PAGE)  # one page, reused by every program

    def read(self, addr, buf):
        ss = self.sector_size
        self._f.readblocks(addr // ss, buf, addr % ss)

    def prog(self, addr, buf):
        ss = self.sector_size
        page = self._page
        n = len(buf)
        i = 0
        while i < n:
            a = addr + i
            base = a & ~(_PAGE - 1)
            o = a - base
            k = _PAGE - o
            if k > n - i:
                k = n - i
            for j in range(_PAGE):
                page[j] = 0xFF
            for j in range(k):
                page[o + j] = buf[i + j]
            self._f.writeblocks(base // ss, page, base % ss)
            i += k

    def erase(self, sector):
        self._f.ioctl(_IOCTL_BLOCK_ERASE, sector)


def flash(start=FLASH_START, length=FLASH_LEN):
    return RegionFlash(start, length)


def i2c(freq=I2C_FREQ_HZ, ident=""):
    """The sensor bus: hardware I2C0 at I2C_FREQ_HZ on the Pico's default pins, SDA GP4
    (pin 6) / SCL GP5 (pin 7). The RP2040's I2C raises OSError(EIO) for a part that does
    not answer, OSError(ETIMEDOUT) for a stuck bus. The SHT3x runs up to 1 MHz; lower
    `freq` to 100_000 for long wires. `ident` is for the unix port's simulated part."""
    return I2C(I2C_ID, scl=Pin(I2C_SCL), sda=Pin(I2C_SDA), freq=freq)


def ticks_ms():
    return time.ticks_ms()


def epoch_s():
    return time.time()


_wlan = None  # network.WLAN on a Pico W; None until net_up() finds out


def net_up(ssid, key, timeout_ms=10000):
    """Join `ssid`; False on timeout or on a Pico without a radio."""
    global _wlan
    if _wlan is None:
        try:
            import network  # only the Pico W build has it
        except ImportError:
            return False
        _wlan = network.WLAN(network.STA_IF)
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
    if _wlan is not None:
        _wlan.disconnect()
        _wlan.active(False)


def net_is_up():
    return _wlan is not None and _wlan.isconnected()
