"""The sensor interface the sampling loop sees: fill a caller's buffer with one raw reading.

Real sensors sit on I2C; the register map of each part comes with its driver (a later
issue). This module only fixes the shape: `read_into(buf)` fills `len(buf)` bytes without
allocating and raises OSError when the part does not answer (NACK, bus stuck), which the
caller counts and survives.
"""


class I2CSensor:
    def __init__(self, i2c, addr, reg):
        if not 0x08 <= addr <= 0x77:
            raise ValueError("7-bit I2C address outside 0x08..0x77")
        self._i2c = i2c
        self._addr = addr
        self._reg = reg

    def read_into(self, buf):
        # machine.I2C raises OSError(ENODEV / ETIMEDOUT) on a missing or stuck device.
        self._i2c.readfrom_mem_into(self._addr, self._reg, buf)
