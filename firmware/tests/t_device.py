"""The storage side of the device loop on the unix HAL: sample, append, send a batch,
release on ack, reboot. Reports the heap the storage needs, and shows that one sample taken
(SHT3x on the simulated bus) and stored allocates nothing."""

import gc
import struct

import hal_unix
import mptest
from mptest import check, metric
from sht3x import SHT3x
from store import open_store

BATCH = 10


def _boot(path):
    return open_store(hal_unix.flash(path, 4096, 16))


def test_sampling_loop_stores_and_releases():
    path = mptest.tmpdir() + "/device.img"
    hal_unix.flash(path, 4096, 16, fresh=True).close()
    gc.collect()
    code = gc.mem_alloc()  # the modules' bytecode (in ROM when frozen into a board build)
    ring = _boot(path)
    gc.collect()
    metric("heap_modules_loaded_bytes", code)
    metric("heap_storage_objects_bytes", gc.mem_alloc() - code)
    now = [0]  # the simulated part's clock: stepped, so no test time is spent waiting

    def ticks():
        return now[0]

    sensor = SHT3x(hal_unix.i2c(fresh=True, seed=7, clock=ticks))
    sample = bytearray(4)
    out = bytearray(64)
    gc.collect()
    base = gc.mem_alloc()
    gc.disable()
    try:
        for _ in range(200):
            now[0] += sensor.start()
            sensor.read()
            struct.pack_into("<hh", sample, 0, sensor.t, sensor.rh)
            ring.append(sample)
        grew = gc.mem_alloc() - base
    finally:
        gc.enable()
    metric("sample_and_append_heap_bytes_per_200", grew)
    check(grew == 0, "sampling loop allocated", grew)
    # the uplink: read a batch, the gateway acks its last identity, release
    check(hal_unix.net_up() and hal_unix.net_is_up(), "simulated link did not come up")
    sent = 0
    while ring.live:
        ring.rewind()
        k = 0
        while k < BATCH and ring.read(out) > 0:
            k += 1
        ring.release(ring.rb, ring.rs)
        sent += k
    check(sent == 200 and ring.live == 0, "sent", sent)
    hal_unix.net_down()
    check(not hal_unix.net_is_up(), "link still up")
    gc.collect()
    metric("heap_in_use_after_uplink_bytes", gc.mem_alloc())
    ring = _boot(path)
    check(ring.live == 0, "released records came back after a reboot")


def test_sensor_failure_is_an_oserror():
    bus = hal_unix.i2c(fresh=True)
    s = SHT3x(bus)
    bus.device(hal_unix.SHT3X_ADDR).nack = True
    try:
        s.start()
    except OSError:
        check(s.bus_errors == 1, "not counted")
        return
    raise mptest.Failure("a failed sensor read went unnoticed")


mptest.run([test_sampling_loop_stores_and_releases, test_sensor_failure_is_an_oserror])
