"""The sources the sampling loop can read, by the name config.json gives them (`metrics[].source`).

Every reading is an integer in units of 10**-exp of the metric's unit, where `exp` is the
source's decimal exponent below: sht3x.t 2153 means 21.53 °C. Integers, because the boards'
floats are 32-bit and each one is a heap object; the decimal point is only put back at the
other end of the pipeline. The config validator (config.py) accepts exactly these names
and converts a metric's `deadband` to the same integer units, so adding a sensor means a
driver, an entry here, and the sampler's mapping from the name to the driver's reading.

Drivers fill a caller's preallocated storage without allocating (SHT3x.read_into), and
raise OSError when the part does not answer, which the caller counts and survives.

Plain Python on purpose: config.py imports it, and config.py also runs under CPython in
tests/firmware/test_config_fuzz.py.
"""

SOURCES = {
    "sht3x.t": 2,  # SHT3x temperature, centi-degrees Celsius (sht3x.SHT3x.t)
    "sht3x.rh": 2,  # SHT3x relative humidity, centi-percent (sht3x.SHT3x.rh)
}
