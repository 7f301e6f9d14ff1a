"""`just bench firmware` runs this (bench/bench_firmware.py) from a ROMFS image with the free
heap of `micropython -X heapsize=64wK`: the product as shipped, measured.

- The default config (temperature every second, critical; humidity every second with its
  0.25 %RH deadband), 60 s batches, an ESP32-style device id, the simulated SHT3x through
  the real driver, the agent's own windows, rules and ring (a 256 KiB NOR partition, as
  hal_unix gives a virtual board). The uplink and its CoAP client are built as device.build
  builds them (so their heap counts) but never run: the agent only wakes the uplink, whose
  clock estimate is that of a synchronised board (a batch then carries it).
- Time is synthetic (one sample a second, read when the driver says it is ready), so
  WINDOWS windows run in well under a second of real time.

Metrics (mptest's METRIC lines, read by the bench):
- bytes: the records as appended (each the CoAP payload, byte for byte). CoAP adds 13 B a
  request (header 4, token 4, Uri-Path "t" 2, Content-Format 2, payload marker 1: checked by
  t_uplink_clock) and 11 B + the telemetry-ack (protocol/replies.py, encoded here with the
  real boot, high-seq and a gateway time) for the piggybacked 2.04: header 4, token 4,
  Content-Format 2 (the gateway sets it: gateway/coap.py), marker 1. IPv4 + UDP add 28 B a
  datagram. Health reports (`health_s`) are counted apart: one POST /h with the agent's real
  report, and its health-ack.
- time: each window close (agent.close_window: encode, CBOR, ring append) in µs per reading
  (over all windows, the median window, the first), the ring append alone, and the block
  encoding alone (tsenc, best of BLOCK_REPS) of the last window's series, whose record is
  printed in hex for the bench to encode with its peers (CPython, the C encoder).
- heap: in use = the free heap once mptest is loaded (FREE0) - gc.mem_free(): the firmware's
  imports and objects, and this script's few classes. The collector runs before every step
  (begin, finish, window close) and the heap is read after it, so a step's figure is what
  it kept plus every byte it allocated: the most it can need.
"""

import gc
import sys
import time
from array import array
from binascii import hexlify

import mptest
from mptest import check, metric

gc.collect()
FREE0 = gc.mem_free()  # what the firmware gets of a 64wK board (less the harness's modules)

import config  # noqa: E402 - after FREE0: the figures below count the firmware's imports

# the shipped defaults, then the validator dropped as device.main() drops it
DEFAULTS = config.defaults()
del sys.modules["config"]
del config
gc.collect()

import hal_unix  # noqa: E402
from agent import RECORD_BYTES, Agent  # noqa: E402
from cbor import Encoder  # noqa: E402
from coap import Client  # noqa: E402
from ring import DROP_OLDEST  # noqa: E402
from sht3x import SHT3x  # noqa: E402
from store import open_store  # noqa: E402
from tsenc import Encoder as BlockEncoder  # noqa: E402
from uplink import Uplink  # noqa: E402

WINDOWS = 10
BLOCK_REPS = 50
DEVICE = "ringtail-a0b1c2d3e4f5"  # config.default_device() on an ESP32 (6-byte unique id)
GATEWAY_TIME = 1764700000000000  # µs since the epoch (December 2025)
CLOCK = (GATEWAY_TIME, 1500)  # offset to wall time, its uncertainty: a synchronised board
COAP_REQUEST = 13  # header 4, token 4, Uri-Path "t" or "h" 2, Content-Format 2, marker 1
COAP_REPLY = 11  # header 4, token 4, Content-Format 2, marker 1
IP_UDP = 28


class SyncedUplink(Uplink):
    def clock_estimate(self):
        return CLOCK


class MsClock:
    """Device µs = 1000 * the synthetic ticks_ms."""

    def __init__(self, now):
        self._now = now

    def us_at(self, t_ms):
        return 1000 * t_ms

    def now_us(self):
        return 1000 * self._now[0]


class TimedRing:
    """The agent's view of the ring: appends timed and their sizes counted, the last record
    kept (in a buffer allocated once)."""

    def __init__(self, ring):
        self.ring = ring
        self.boot = ring.boot
        self.us = 0
        self.records = 0
        self.bytes = 0
        self.last = bytearray(RECORD_BYTES)
        self.last_n = 0

    def append(self, record):
        t = time.ticks_us()
        r = self.ring.append(record)
        self.us += time.ticks_diff(time.ticks_us(), t)
        n = len(record)
        self.records += 1
        self.bytes += n
        last = self.last
        for i in range(n):
            last[i] = record[i]
        self.last_n = n
        return r


def _reply_bytes(enc, *pairs):
    """CoAP + body bytes of a 2.04 whose body is the map of `pairs` (key, value, ...)."""
    enc.reset()
    enc.put_map(len(pairs) // 2)
    for v in pairs:
        enc.put_int(v)
    return COAP_REPLY + len(enc.view())


def _block_us(window):
    """Best µs of encoding every series of the open window as tsenc blocks (what
    window.next_record does but the CBOR around them), and the points encoded."""
    enc = BlockEncoder(window.points)
    best = -1
    points = 0
    for _ in range(BLOCK_REPS):
        points = 0
        t = time.ticks_us()
        for i in range(len(window._n)):
            k = window._n[i]
            if k:
                enc.encode_decimal(
                    memoryview(window._us[i])[:k], memoryview(window._val[i])[:k], window._exps[i]
                )
                points += k
        us = time.ticks_diff(time.ticks_us(), t)
        if best < 0 or us < best:
            best = us
    return best, points


def test_bytes_on_air_per_reading_at_1_hz_with_60_s_batches():
    gc.collect()
    imports = FREE0 - gc.mem_free()
    now = [0]
    clock = MsClock(now)
    cfg = DEFAULTS
    cfg["device"] = DEVICE
    check(cfg["batch_s"] == 60, "the default batch is 60 s", cfg["batch_s"])
    check(len(cfg["metrics"]) == 2, "two default metrics", cfg["metrics"])
    for m in cfg["metrics"]:
        check(m["period_ms"] == 1000, "1 Hz by default", m)
    # as device.build(hal_unix, cfg) builds it, with the synthetic clock
    flash = hal_unix.flash(mptest.tmpdir() + "/air.img", fresh=True)
    ring = open_store(flash, DROP_OLDEST)
    c = cfg["coap"]
    client = Client(cfg["gateway"]["host"], cfg["gateway"]["port"], clock)
    up = SyncedUplink(
        ring, client, clock, backoff_cap_ms=c["backoff_max_s"] * 1000, record_bytes=RECORD_BYTES
    )
    bus = hal_unix.i2c(fresh=True, seed=7, clock=lambda: now[0])
    a = Agent(cfg, ring, up, clock, {"sht3x": SHT3x(bus)})
    timed = TimedRing(ring)
    a.ring = timed
    ack = Encoder(bytearray(32))
    gc.collect()
    built = FREE0 - gc.mem_free()
    peak = built
    close_us = closed = 0
    closes = array("i", bytes(4 * WINDOWS))  # per window: µs per reading, x 100
    ack_bytes = 0
    block_us = block_points = last_readings = 0
    end = WINDOWS * a.batch_ms
    a.start_sampling(0)
    t = 0
    while True:
        now[0] = t
        if time.ticks_diff(t, a.window.opened_ms) >= a.batch_ms:
            if t == end:  # the last window: its series timed apart, then freed
                block_us, block_points = _block_us(a.window)
            seq = a.seq
            gc.collect()
            t0 = time.ticks_us()
            a.close_window(t)
            us = time.ticks_diff(time.ticks_us(), t0)
            peak = max(peak, FREE0 - gc.mem_free())
            close_us += us
            last_readings = a.seq - seq
            if closed < WINDOWS:
                closes[closed] = 100 * us // last_readings
            closed += 1
            ack_bytes += _reply_bytes(ack, 0, 1, 1, ring.boot, 2, a.seq - 1, 3, GATEWAY_TIME)
        if t >= end:
            break
        gc.collect()
        wait = a.begin(t)
        peak = max(peak, FREE0 - gc.mem_free())
        if wait >= 0:
            now[0] = t + wait
            gc.collect()
            a.finish(t + wait)
            peak = max(peak, FREE0 - gc.mem_free())
        t += 1000
    gc.collect()
    steady = FREE0 - gc.mem_free()

    readings = a.seq
    records = timed.records
    check(a.anomalies == 0 and a.sensor_errors == 0, a.anomalies, a.sensor_errors)
    check(records == WINDOWS, "one record per 60 s window", records)
    check(readings >= WINDOWS * 60, "temperature alone keeps 60 a window", readings)
    check(ring.live == WINDOWS, "every record in the ring", ring.live)
    payload = timed.bytes
    coap = payload + records * COAP_REQUEST + ack_bytes
    air = coap + 2 * records * IP_UDP
    # one health report per health_s, with its health-ack
    a.ring = ring
    health = len(a.health_report()) + COAP_REQUEST + _reply_bytes(ack, 0, 1, 1, GATEWAY_TIME)
    health_per_reading = (health + 2 * IP_UDP) * a.batch_ms / (cfg["health_s"] * 1000)
    metric("air_windows", WINDOWS)
    metric("air_records", records)
    metric("air_readings", readings)
    metric("air_readings_per_batch", "%.1f" % (readings / records))
    metric("air_batch_payload_bytes", "%.1f" % (payload / records))
    metric("air_ack_bytes", "%.1f" % (ack_bytes / records))
    metric("air_payload_bytes_per_reading", "%.3f" % (payload / readings))
    metric("air_coap_bytes_per_reading", "%.3f" % (coap / readings))
    metric("air_coap_udp_ip_bytes_per_reading", "%.3f" % (air / readings))
    metric("air_health_bytes", health)
    metric("air_health_s", cfg["health_s"])
    metric(
        "air_with_health_bytes_per_reading",
        "%.3f" % ((air + records * health_per_reading) / readings),
    )
    metric("air_close_us_per_reading", "%.2f" % (close_us / readings))
    ordered = sorted(closes)
    metric("air_close_us_per_reading_median", "%.2f" % (ordered[WINDOWS // 2] / 100))
    metric("air_close_us_per_reading_first", "%.2f" % (closes[0] / 100))
    metric("air_append_us_per_reading", "%.2f" % (timed.us / readings))
    metric("air_block_us_per_reading", "%.3f" % (block_us / block_points))
    metric("air_block_points", block_points)
    metric("air_last_readings", last_readings)
    metric("heap_free_start", FREE0)
    metric("heap_used_imports", imports)
    metric("heap_used_built", built)
    metric("heap_used_peak", peak)
    metric("heap_used_steady", steady)
    metric("heap_free_at_peak", FREE0 - peak)
    metric("air_last_record_hex", hexlify(memoryview(timed.last)[: timed.last_n]).decode())


mptest.run([test_bytes_on_air_per_reading_at_1_hz_with_60_s_batches])
