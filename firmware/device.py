"""The device assembled from its configuration and its board's HAL, and run.

main.py calls `main()` at power-on. Everything the agent needs is built here once; after
this the heap only holds what the sampling, uplink and health tasks reuse.
"""

import asyncio
import gc
import sys

from agent import RECORD_BYTES, Agent
from clock import DeviceClock
from coap import Client
from ring import DROP_OLDEST, REFUSE_NEW
from store import open_store
from uplink import ACKED, QUARANTINED, Uplink


def board():
    """The HAL module of the board this runs on."""
    if sys.platform == "esp32":
        import hal_esp32 as hal
    elif sys.platform == "rp2":
        import hal_rp2 as hal
    else:
        import hal_unix as hal
    return hal


def sources(hal, cfg):
    """The sensors the configured metrics read, by source name."""
    out = {}
    for m in cfg["metrics"]:
        name = m["source"].split(".")[0]
        if name in out:
            continue
        if name == "sht3x":
            from sht3x import SHT3x

            out[name] = SHT3x(hal.i2c(ident=cfg["device"]))
        else:
            raise ValueError("no driver for source " + name)
    return out


def _log(event, a, b, c):
    # one line per uplink outcome on the console: what a person at the REPL wants to see
    if event == ACKED:
        print("acked boot", a, "seq", b, "..", c)
    elif event == QUARANTINED:
        print("quarantined", c, "readings of record", a, b)


def build(hal, cfg):
    clock = DeviceClock()
    policy = REFUSE_NEW if cfg["ring_policy"] == "refuse_new" else DROP_OLDEST
    ring = open_store(hal.flash(), policy)
    c = cfg["coap"]
    szx = 0
    while (16 << szx) < c["block_bytes"]:
        szx += 1
    client = Client(
        cfg["gateway"]["host"],
        cfg["gateway"]["port"],
        clock,
        ack_timeout_ms=c["ack_timeout_ms"],
        max_retransmit=c["max_retransmit"],
        szx=szx,
    )
    up = Uplink(
        ring,
        client,
        clock,
        backoff_cap_ms=c["backoff_max_s"] * 1000,
        record_bytes=RECORD_BYTES,
    )
    up.on_event = _log
    return Agent(cfg, ring, up, clock, sources(hal, cfg))


def load_config():
    """The configuration (config.load). The validator is needed once per boot: it is
    dropped here, and its code and names go back to the heap once this frame is gone (a
    name bound to the module anywhere would keep all of it)."""
    import config

    cfg, problem = config.load()
    if problem:
        print("config:", problem)
    del sys.modules["config"]
    return cfg


def main():
    cfg = load_config()
    gc.collect()
    hal = board()
    wifi = cfg["wifi"]
    if wifi["ssid"] and not hal.net_up(wifi["ssid"], wifi["key"]):
        print("wifi: not connected; sampling into flash until it is")
    agent = build(hal, cfg)
    print("ringtail", cfg["device"], "boot", agent.ring.boot, "gateway", cfg["gateway"]["host"])
    asyncio.run(agent.run())
