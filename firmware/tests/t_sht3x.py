"""The SHT3x driver against the register-level model on the simulated bus (simi2c.py):
CRC and conversion against the datasheet, readings equal to the model's truth, the part's
timing and faults (early read, bad CRC, NACK), and no allocation on start() + read()."""

import gc
import time
from array import array

import hal_unix
import mptest
import sensor
import sht3x
import simi2c
from mptest import check, metric
from sht3x import SHT3x


class Clock:
    """A ticks_ms that moves only when told to."""

    def __init__(self, start=0):
        self.now = start

    def ticks(self):
        return self.now

    def advance(self, ms):
        self.now = time.ticks_add(self.now, ms)


def _rig(seed=1, start=0, addr=0x44):
    clock = Clock(start)
    bus = simi2c.SimI2C()
    part = bus.attach(simi2c.SHT3xSim(addr, seed, clock.ticks))
    return clock, bus, part, SHT3x(bus, addr)


def _take(clock, s):
    clock.advance(s.start())
    s.read()


def _raises(fn, errno=None):
    try:
        fn()
    except OSError as e:
        check(errno is None or e.errno == errno, "errno", e.errno, "expected", errno)
        return e
    raise mptest.Failure("no OSError")


def test_crc8_datasheet_example():
    check(sht3x.crc8(b"\xbe\xef") == 0x92, "driver crc8(0xBEEF)", sht3x.crc8(b"\xbe\xef"))
    check(sht3x.crc8(b"\x00\x00\xbe\xef", 2) == 0x92, "crc8 at an offset")
    check(simi2c._crc(0xBE, 0xEF) == 0x92, "model crc(0xBEEF)")
    w = bytearray(2)
    for word in range(0, 65536, 251):  # the driver's bitwise and the model's table CRC agree
        w[0] = word >> 8
        w[1] = word & 0xFF
        check(sht3x.crc8(w) == simi2c._crc(w[0], w[1]), "crc differs for", word)


def test_conversion_corners_and_rounding():
    check(sht3x.t_centi(0) == -4500, "raw 0 is -45.00 °C", sht3x.t_centi(0))
    check(sht3x.t_centi(65535) == 13000, "raw 65535 is 130.00 °C", sht3x.t_centi(65535))
    check(sht3x.rh_centi(0) == 0, "raw 0 is 0 %RH")
    check(sht3x.rh_centi(65535) == 10000, "raw 65535 is 100 %RH", sht3x.rh_centi(65535))
    # largest intermediate product: must stay a small int on the 32-bit ports
    check(3500 * 65535 + 6553 < 1 << 30, "temperature product leaves the small ints")
    for raw in range(0, 65536, 97):
        # nearest integer to the datasheet formula, exactly (no tie is possible: 65535 odd)
        t = -4500 + (2 * 17500 * raw + 65535) // (2 * 65535)
        rh = (2 * 10000 * raw + 65535) // (2 * 65535)
        check(sht3x.t_centi(raw) == t, "t_centi", raw, sht3x.t_centi(raw), t)
        check(sht3x.rh_centi(raw) == rh, "rh_centi", raw, sht3x.rh_centi(raw), rh)


def test_measurement_equals_the_models_truth():
    clock, _bus, part, s = _rig(seed=7)
    out = array("i", (0, 0))
    seen_t = []
    for _ in range(250):  # about 29 h, one measurement every 7 minutes
        clock.advance(s.start())
        s.read_into(out)
        check(out[0] == part.t == s.t and out[1] == part.rh == s.rh, out, part.t, part.rh)
        check(1900 <= out[0] <= 2320 and 4300 <= out[1] <= 5700, "implausible", out)
        if out[0] not in seen_t:
            seen_t.append(out[0])
        clock.advance(7 * 60 * 1000)
    check(len(seen_t) > 50, "temperature barely moves", len(seen_t))
    check(s.reads == 250 and s.crc_errors == 0 and s.bus_errors == 0, "counters")
    part.t_offset = 500  # a step of +5 °C is reported as such
    _take(clock, s)
    check(s.t == part.t and s.t > 2300, "offset", s.t)
    check(s.value(s.field("t")) == s.t and s.value(s.field("rh")) == s.rh, "value(field)")


def test_two_seeds_differ_and_a_seed_repeats():
    a = _rig(seed=1)
    b = _rig(seed=2)
    c = _rig(seed=1)
    diff = 0
    for _ in range(20):
        for clock, _bus, _part, s in (a, b, c):
            _take(clock, s)
            clock.advance(1000)
        check(a[3].t == c[3].t and a[3].rh == c[3].rh, "same seed, same readings")
        diff += a[3].t != b[3].t or a[3].rh != b[3].rh
    check(diff > 10, "seeds 1 and 2 give the same readings")


def test_early_read_nacks_like_the_part():
    clock, bus, part, s = _rig()
    _raises(s.read, simi2c.ENODEV)  # nothing measured yet
    check(s.start() == 16, "wait_ms for high repeatability", s.wait_ms)
    clock.advance(14)
    _raises(s.read, simi2c.ENODEV)  # still converting: the part NACKs its read header
    _raises(s.start, simi2c.ENODEV)  # and any command
    check(bus.scan() == [], "a busy part answered scan()")
    clock.advance(1)  # 15 ms, the datasheet maximum
    s.read()
    check(s.reads == 1 and s.bus_errors == 3, "counters", s.reads, s.bus_errors)
    _raises(s.read, simi2c.ENODEV)  # data is read once
    for rep, wait, busy in ((sht3x.MEDIUM, 7, 6), (sht3x.LOW, 5, 4)):
        s2 = SHT3x(bus, 0x44, rep)
        check(s2.start() == wait, "wait_ms", rep, s2.wait_ms)
        clock.advance(busy - 1)
        _raises(s2.read)
        clock.advance(1)
        s2.read()
        check(s2.t == part.t, "repeatability", rep)


def test_measurement_across_a_ticks_wrap():
    # 5 ms before the ticks counter wraps to 0
    clock, _bus, part, s = _rig(start=time.ticks_add(0, -5))  # type: ignore[type-var]
    clock.advance(s.start())  # ready 10 ms after the wrap
    s.read()
    check(s.t == part.t and s.reads == 1, "wrap")


def test_bad_crc_is_detected_counted_and_the_next_read_works():
    clock, _bus, part, s = _rig()
    _take(clock, s)
    t0, rh0 = s.t, s.rh
    part.bad_crc = 2  # the first corrupts the temperature word's CRC, the second humidity's
    part.t_offset = 300
    for _ in range(2):
        clock.advance(s.start())
        try:
            s.read()
            raise mptest.Failure("a bad CRC went unnoticed")
        except sht3x.CRCError as e:
            check(isinstance(e, OSError), "CRCError is an OSError")
        check(s.t == t0 and s.rh == rh0, "a bad frame changed the reading")
    check(s.crc_errors == 2 and s.bus_errors == 0, "counted", s.crc_errors, s.bus_errors)
    _take(clock, s)
    check(s.t == part.t and s.rh == part.rh and s.reads == 2, "no recovery")
    part.bad_crc = -1
    for _ in range(3):
        clock.advance(s.start())
        _raises(s.read)
    check(s.crc_errors == 5, "every read corrupt", s.crc_errors)


def test_nack_raises_oserror_and_is_counted():
    clock, bus, part, s = _rig()
    check(bus.scan() == [0x44], "scan", bus.scan())
    part.nack = True
    _raises(s.start, simi2c.ENODEV)
    _raises(s.read, simi2c.ENODEV)
    check(bus.scan() == [], "a silent part answered scan()")
    check(s.bus_errors == 2 and s.reads == 0, "counted", s.bus_errors)
    part.nack = False
    _take(clock, s)
    check(s.t == part.t, "no recovery after the part came back")
    other = SHT3x(bus, sht3x.ADDR_HIGH)  # nobody at 0x45
    _raises(other.start, simi2c.ENODEV)
    try:
        SHT3x(bus, 0x40)
        raise mptest.Failure("address 0x40 accepted")
    except ValueError:
        pass


def test_stuck_part_repeats_its_reading():
    clock, _bus, part, s = _rig()
    _take(clock, s)
    part.stuck = True
    t0, rh0 = s.t, s.rh
    for _ in range(5):
        clock.advance(3600 * 1000)
        _take(clock, s)
        check(s.t == t0 and s.rh == rh0, "a stuck part changed its reading")
    part.stuck = False
    clock.advance(3 * 3600 * 1000)
    _take(clock, s)
    check(s.t != t0 or s.rh != rh0, "reading frozen after stuck was cleared")


def test_status_heater_reset_serial_and_bad_commands():
    _clock, bus, part, s = _rig(seed=0x1234)
    check(s.status() == 0x8010, "power-on status", hex(s.status()))
    s.clear_status()
    check(s.status() == 0, "cleared", hex(s.status()))
    s.heater(True)
    check(s.status() & sht3x.STATUS_HEATER, "heater bit")
    s.heater(False)
    check(not s.status() & sht3x.STATUS_HEATER, "heater still on")
    s.heater(True)
    s.reset()
    st = s.status()
    check(st & sht3x.STATUS_RESET and not st & sht3x.STATUS_HEATER, "after reset", hex(st))
    check(s.serial() == 0x5EED1234, "serial", hex(s.serial()))
    check(bus.writeto(0x44, b"\x12\x34") == 1, "an unknown command's second byte is ACKed")
    check(s.status() & sht3x.STATUS_CMD_FAILED, "the status read reports the failed command")
    check(s.status() & sht3x.STATUS_CMD_FAILED == 0, "a good command clears CMD_FAILED")
    errs = s.bus_errors
    _raises(lambda: s._cmd(b"\x12\x34"), 5)
    check(s.bus_errors == errs + 1, "a NACKed command byte is a bus error")
    check(part.status & sht3x.STATUS_CMD_FAILED, "CMD_FAILED not set")


def test_start_and_read_allocate_nothing():
    clock, _bus, _part, s = _rig()
    out = array("i", (0, 0))
    for _ in range(3):  # warm up every path once
        clock.advance(s.start())
        s.read_into(out)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(500):
            clock.advance(s.start())
            s.read_into(out)
            clock.advance(1000)
        grew = gc.mem_alloc() - before
    finally:
        gc.enable()
    metric("start_read_heap_bytes_per_500", grew)
    check(s.reads == 503, "reads", s.reads)
    check(grew == 0, "start + read allocated", grew, "bytes over 500 measurements")


def test_blocking_measure_on_the_unix_hal():
    bus = hal_unix.i2c(fresh=True, seed=3)
    check(hal_unix.i2c() is bus, "the HAL's bus is one object, like machine.I2C(0)")
    s = SHT3x(bus)
    t0 = time.ticks_ms()
    s.measure()
    check(time.ticks_diff(time.ticks_ms(), t0) >= 15, "measure() did not wait")
    part = bus.device(hal_unix.SHT3X_ADDR)
    check(s.t == part.t and s.rh == part.rh, "measure", s.t, part.t)


def test_sources_match_the_driver():
    s = _rig()[3]
    for f in sht3x.FIELDS:
        check(sensor.SOURCES["sht3x." + f] == s.exponent(f) == sht3x.EXP, "exponent", f)
    check(s.field("t") == 0 and s.field("rh") == 1, "fields")


mptest.run(
    [
        test_crc8_datasheet_example,
        test_conversion_corners_and_rounding,
        test_measurement_equals_the_models_truth,
        test_two_seeds_differ_and_a_seed_repeats,
        test_early_read_nacks_like_the_part,
        test_measurement_across_a_ticks_wrap,
        test_bad_crc_is_detected_counted_and_the_next_read_works,
        test_nack_raises_oserror_and_is_counted,
        test_stuck_part_repeats_its_reading,
        test_status_heater_reset_serial_and_bad_commands,
        test_start_and_read_allocate_nothing,
        test_blocking_measure_on_the_unix_hal,
        test_sources_match_the_driver,
    ]
)
