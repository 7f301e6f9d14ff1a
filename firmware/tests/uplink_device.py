"""A device for tests/firmware/test_uplink.py: a flash ring on the NOR emulator, a producer
that appends telemetry batches, and the uplink sending them to host:port. Run with
key=value arguments (below); prints one machine-readable line per event:

    BOOT <boot> <live records>             the store is open
    APPEND <boot> <seq> <last> <crc32> <ring seq> <bytes>   a batch is in the ring
    ACKED <boot> <seq> <last>              a 2.04 covered the batch
    RELEASED <ring boot> <ring seq> <seq>  ... and the ring released it
    QUARANTINED <ring boot> <ring seq> <readings> <reason>
    BACKOFF <code> <ms>
    LIVE <boot> <seq> <crc32>              mode=inspect: a record still in the ring
    CLOCK <device µs> <wall µs> <offset µs> <uncertainty µs>
    HEALTH <True/False>
    STATS key=value ...
    DONE                                    everything produced was sent (exit=drained)
"""

import asyncio
import gc
import sys
import time
from binascii import crc32

import coap
import uplink
from cbor import Encoder
from clock import DeviceClock
from noremu import NorFlash
from store import open_store

_DEFAULTS = {
    "img": "flash.img",
    "fresh": "0",
    "host": "127.0.0.1",
    "port": "5683",
    "device": "dev-1",
    "n": "10",  # batches to append in this run
    "every_ms": "20",
    "readings": "5",  # per batch, one plain series
    "big_every": "0",  # every k-th batch carries 200 readings (Block1 at SZX 6)
    "bad": "",  # comma-separated batch indexes (this run) with a metric name the CDDL refuses
    "ack_ms": "2000",
    "retx": "4",
    "szx": "6",
    "backoff_ms": "1000",
    "cap_ms": "60000",
    "exit": "drained",  # or "never"
    "mode": "run",  # or "inspect": list the live records and exit
    "health": "0",  # 1: send one health report once drained
}


def _args():
    a = dict(_DEFAULTS)
    for kv in sys.argv[1:]:
        k, _, v = kv.partition("=")
        a[k] = v
    return a


def _out(*parts):
    print(" ".join(str(p) for p in parts))


def _batch(enc, device, boot, seq, t0, est, n, bad):
    enc.reset()
    enc.put_map(7 if est is not None else 6)
    enc.put_int(0)
    enc.put_int(1)
    enc.put_int(1)
    enc.put_text(device)
    enc.put_int(2)
    enc.put_int(boot)
    enc.put_int(3)
    enc.put_int(seq)
    enc.put_int(4)
    enc.put_int(t0)
    if est is not None:
        enc.put_int(5)
        enc.put_array(2)
        enc.put_int(est[0])
        enc.put_int(est[1])
    enc.put_int(6)
    enc.put_array(1)
    enc.put_map(3)
    enc.put_int(0)
    enc.put_text("Temperature" if bad else "temperature")
    enc.put_int(1)
    enc.put_array(n)
    for k in range(n):
        enc.put_int(k * 1000)
    enc.put_int(2)
    enc.put_array(n)
    for k in range(n):
        enc.put_float(20.0 + ((seq + k) % 400) / 8)
    return enc.view()


def _inspect(ring):
    buf = bytearray(ring.paymax)
    ring.rewind()
    while True:
        n = ring.read(buf)
        if n < 0:
            break
        _out("LIVE", ring.rb, ring.rs, crc32(memoryview(buf)[:n]))


class _Heap:
    """Live heap (after a collection) at a few points of the run: the high-water mark of
    what the device needs, garbage excluded."""

    def __init__(self):
        self.max_live = 0
        self.min_free = 1 << 30

    def sample(self):
        gc.collect()
        self.max_live = max(self.max_live, gc.mem_alloc())
        self.min_free = min(self.min_free, gc.mem_free())


def _health(enc, a, ring, up, seq, started):
    enc.reset()
    enc.put_map(11)
    for k, v in ((0, 1), (1, a["device"]), (2, ring.boot)):
        enc.put_int(k)
        enc.put(v)
    enc.put_int(3)
    enc.put_int(time.ticks_diff(time.ticks_ms(), started) // 1000)
    enc.put_int(4)
    enc.put_int(0)
    enc.put_int(5)
    enc.put_int(gc.mem_free())
    enc.put_int(6)
    used, cap = ring.fill()
    enc.put([used, cap])
    enc.put_int(7)
    enc.put_int(ring.dropped + ring.refused)
    enc.put_int(8)
    enc.put_int(up.retransmits)
    enc.put_int(9)
    enc.put([0, seq - 1] if seq else None)
    enc.put_int(10)
    enc.put_int(up.quarantined)
    return enc.view()


async def _main(a):
    started = time.ticks_ms()
    # big buffers first, while the heap is in one piece
    big = int(a["big_every"])
    enc = Encoder(bytearray(64 + 12 * max(200 if big else 0, int(a["readings"]))))
    heap = _Heap()
    flash = NorFlash(a["img"], 4096, 64, a["fresh"] == "1")
    ring = open_store(flash)
    _out("BOOT", ring.boot, ring.live)
    if a["mode"] == "inspect":
        _inspect(ring)
        return
    clock = DeviceClock()
    client = coap.Client(
        a["host"],
        int(a["port"]),
        clock,
        ack_timeout_ms=int(a["ack_ms"]),
        max_retransmit=int(a["retx"]),
        szx=int(a["szx"]),
    )
    up = uplink.Uplink(
        ring,
        client,
        clock,
        backoff_ms=int(a["backoff_ms"]),
        backoff_cap_ms=int(a["cap_ms"]),
        record_bytes=len(enc.buf),
    )

    def event(ev, x, y, z):
        if ev == uplink.ACKED:
            _out("ACKED", x, y, z)
        elif ev == uplink.RELEASED:
            _out("RELEASED", x, y, z)
        elif ev == uplink.QUARANTINED:
            _out("QUARANTINED", x, y, z, up.last_error)
        elif ev == uplink.BACKOFF:
            _out("BACKOFF", coap.code_text(x), y)

    up.on_event = event
    bad = [int(x) for x in a["bad"].split(",") if x]
    task = asyncio.create_task(up.run())
    heap.sample()
    seq = 0
    for i in range(int(a["n"])):
        n = 200 if big and i % big == big - 1 else int(a["readings"])
        view = _batch(
            enc, a["device"], ring.boot, seq, clock.now_us(), up.clock_estimate(), n, i in bad
        )
        rs = ring.append(view)
        _out("APPEND", ring.boot, seq, seq + n - 1, crc32(view), rs, len(view))
        seq += n
        up.wake()
        if i % 10 == 0:
            heap.sample()
        await asyncio.sleep_ms(int(a["every_ms"]))
    while a["exit"] != "drained" or ring.live:
        await asyncio.sleep_ms(20)
    heap.sample()
    if a["health"] == "1":
        ok = await up.send_health(_health(enc, a, ring, up, seq, started))
        _out("HEALTH", ok, coap.code_text(up.client.code))
    est = up.clock_estimate()
    if est is not None:
        now = clock.now_us()
        wall = time.time_ns() // 1000
        _out("CLOCK", now, wall, est[0], est[1])
    task.cancel()
    c = up.client
    _out(
        "STATS",
        "acked=" + str(up.acked),
        "quarantined=" + str(up.quarantined),
        "backoffs=" + str(up.backoffs),
        "failures=" + str(up.failures),
        "retransmits=" + str(up.retransmits),
        "messages=" + str(c.messages),
        "bytes_sent=" + str(c.bytes_sent),
        "bytes_received=" + str(c.bytes_received),
        "heap_live_max=" + str(heap.max_live),
        "heap_free_min=" + str(heap.min_free),
    )
    _out("DONE")


asyncio.run(_main(_args()))
