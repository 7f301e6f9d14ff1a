"""firmware/: the device as shipped. Bytes on air per reading at 1 Hz with 60 s batches, the
time the device spends encoding a reading (against CPython and the C encoder on the same
series), the heap high-water mark of the running agent, and the code's size.

`just bench firmware` (`python -m bench firmware`). The device part is
firmware/tests/air_bench.py, run on the MicroPython unix port from a ROMFS image with the
free heap of `micropython -X heapsize=64wK` (as a virtual board runs: docs/firmware.md);
its METRIC lines are read here. Times on this host say little about an ESP32: read the
ratios to the peers measured in the same run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import numpy as np

import native
from ringtail.device import romfs as rom
from ringtail.device.tools import FIRMWARE, tool

SCRIPT = "air_bench"
HELPERS = ("mptest",)  # the test modules air_bench imports
HEAP = "64wK"  # a virtual board's heap (docs/firmware.md, "Memory")
BOARD_64K = "64K"
TIMEOUT_S = 120
PEER_REPS = 300  # best of this many encodes of the window's series, per peer


def run_device(tmp: Path) -> tuple[dict[str, str], rom.RomImage]:
    """Run air_bench from a ROMFS image (firmware + mptest + air_bench) with a 64wK board's
    free heap. Returns its metrics and the firmware's own image (what a board gets)."""
    mpy = tmp / "mpy"
    product = rom.build(FIRMWARE, mpy)  # firmware/*.py but main.py, boot.py
    tests = [FIRMWARE / "tests" / f"{m}.py" for m in (*HELPERS, SCRIPT)]
    written, errors = rom.compile_sources(tests, mpy)
    if errors:
        raise RuntimeError(f"mpy-cross failed: {errors}")
    firmware_mpys = [mpy / m.name for m in product.modules]
    image = rom.image_of(firmware_mpys + written).write(tmp / "bench.romfs")
    free = rom.free_heap(HEAP)
    setup = f"import sys\nsys.argv[:] = {[SCRIPT, str(tmp)]!r}\n"
    code = f'print("METRIC heap_free_at_start", gc.mem_free())\nimport {SCRIPT}\n'
    cmd, env = rom.launch(image, free, code, tool("micropython"), setup)
    done = subprocess.run(
        cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    metrics: dict[str, str] = {}
    ok = False
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "METRIC":
            metrics[parts[1]] = parts[2]
        elif line.startswith("RESULT"):
            ok = line.strip() == "RESULT pass=1 fail=0"
    if done.returncode != 0 or not ok:
        raise RuntimeError(f"{SCRIPT} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return metrics, product


def load_tsenc() -> Any:
    """firmware/tsenc.py under CPython (it falls back to an identity const()), under a private
    name so nothing else in this process sees it."""
    spec = importlib.util.spec_from_file_location("ringtail_bench_tsenc", FIRMWARE / "tsenc.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def best_us(fn: Callable[[], object], reps: int = PEER_REPS) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e6


def series_of(record: dict[int, Any], tsenc: Any) -> list[tuple[str, Any, Any, int, bytes]]:
    """(name, µs offsets as array('i'), counts as array('i'), exponent, block) of each series
    in a batch, from its blocks (native.decode) and the exponent whose decimal block from
    tsenc under CPython is the device's, byte for byte."""
    from array import array

    out = []
    enc = tsenc.Encoder(64)
    for s in record[6]:
        block = s[3]
        ts, vs = native.decode(block)
        for e in range(19):
            counts = np.round(vs * 10.0**e).astype(np.int64)
            if not np.array_equal(counts / 10.0**e, vs):
                continue
            us, cs = array("i", ts.tolist()), array("i", counts.tolist())
            if enc.encode_decimal(memoryview(us), memoryview(cs), e) == block:
                out.append((s[0], us, cs, e, block))
                break
        else:
            raise RuntimeError(f"no decimal exponent reproduces the device's {s[0]} block")
    return out


def peers(record: dict[int, Any]) -> dict[str, Any]:
    """Block encoding of the device's last window, per reading: CPython running the same
    tsenc.py, and the C encoder (native.encode, which also chooses the mode)."""
    tsenc = load_tsenc()
    series = series_of(record, tsenc)
    n = sum(len(s[1]) for s in series)
    enc = tsenc.Encoder(64)

    def cpython() -> None:
        for _, us, cs, e, _ in series:
            enc.encode_decimal(memoryview(us), memoryview(cs), e)

    arrays = [
        (np.asarray(us, dtype=np.int64), np.asarray(cs, dtype=np.float64) / 10.0**e)
        for _, us, cs, e, _ in series
    ]

    def c() -> None:
        for ts, vs in arrays:
            native.encode(ts, vs)

    same = all(native.encode(ts, vs) == s[4] for (ts, vs), s in zip(arrays, series, strict=True))
    return {
        "points": n,
        "cpython_us": best_us(cpython) / n,
        "c_us": best_us(c) / n,
        "c_same_bytes": same,
        "series": [(s[0], len(s[1]), len(s[4])) for s in series],
    }


def breakdown(raw: bytes) -> list[tuple[str, int]]:
    """Where a batch's bytes go: (part, bytes), summing to len(raw) (CBOR sizes add up:
    the device writes shortest forms, as cbor2 does)."""
    rec = cbor2.loads(raw)

    def kv(k: int, v: object) -> int:
        return len(cbor2.dumps(k)) + len(cbor2.dumps(v))

    names = {0: "version", 1: "device id", 2: "boot", 3: "seq", 4: "base time", 5: "clock"}
    parts = [("batch map head", len(cbor2.dumps({k: 0 for k in rec})) - sum(kv(k, 0) for k in rec))]
    parts += [(f"{names.get(k, k)} (key {k})", kv(k, v)) for k, v in rec.items() if k != 6]
    series = rec[6]
    head = len(cbor2.dumps(6)) + len(cbor2.dumps([0] * len(series))) - len(series)
    parts.append(("series array head (key 6)", head))
    for s in series:
        name = s[0]
        parts.append((f"{name}: name", kv(0, name) + 1))  # + the series map head
        parts.append((f"{name}: block ({s[4]} points)", kv(3, s[3])))
        parts.append((f"{name}: count", kv(4, s[4])))
    total = sum(b for _, b in parts)
    if total != len(raw):
        raise RuntimeError(f"breakdown sums to {total}, the record is {len(raw)} bytes")
    return parts


def table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ringtail-bench-fw-") as d:
        tmp = Path(d)
        t = time.perf_counter()
        m, product = run_device(tmp)
        device_s = time.perf_counter() - t
    raw = bytes.fromhex(m["air_last_record_hex"])
    record = cbor2.loads(raw)
    p = peers(record)
    f = {k: float(v) for k, v in m.items() if k != "air_last_record_hex"}
    readings, records = int(f["air_readings"]), int(f["air_records"])

    print(
        f"air_bench: {int(f['air_windows'])} windows of 60 s at 1 Hz, default config, "
        f"{readings} readings in {records} records; unix port, ROMFS, heap {HEAP} "
        f"({device_s:.1f} s)\n"
    )
    print(
        table(
            ("bytes on air per reading", "B/reading", "B/batch"),
            [
                (
                    "payload (CBOR batch)",
                    f"**{f['air_payload_bytes_per_reading']:.2f}**",
                    f"{f['air_batch_payload_bytes']:.1f}",
                ),
                (
                    "+ CoAP (13 B request, 2.04 + telemetry-ack)",
                    f"**{f['air_coap_bytes_per_reading']:.2f}**",
                    f"{f['air_coap_bytes_per_reading'] * readings / records:.1f}",
                ),
                (
                    "+ UDP + IPv4 (28 B a datagram, 2 a batch)",
                    f"**{f['air_coap_udp_ip_bytes_per_reading']:.2f}**",
                    f"{f['air_coap_udp_ip_bytes_per_reading'] * readings / records:.1f}",
                ),
                (
                    f"+ a health report every {int(f['air_health_s'])} s "
                    f"({int(f['air_health_bytes'])} B CoAP + 56 B IP)",
                    f"{f['air_with_health_bytes_per_reading']:.2f}",
                    f"{f['air_with_health_bytes_per_reading'] * readings / records:.1f}",
                ),
            ],
        )
    )
    print(f"\ngoal: at most 2 B/reading; readings per batch {f['air_readings_per_batch']:.1f}\n")
    parts = breakdown(raw)
    print(
        table(
            (f"last batch: {len(raw)} B, {int(f['air_last_readings'])} readings", "B", "share"),
            [(k, b, f"{100 * b / len(raw):.0f} %") for k, b in parts],
        )
    )
    print()
    mp_block = f["air_block_us_per_reading"]
    close = f["air_close_us_per_reading_median"]
    print(
        table(
            ("encode time per reading", "µs", "÷ CPython tsenc", "÷ C encoder"),
            [
                (
                    "window close on the device, median window (encode, CBOR, ring append)",
                    f"**{close:.2f}**",
                    f"**{close / p['cpython_us']:.1f}x**",
                    f"{close / p['c_us']:.0f}x",
                ),
                (
                    f"  all {records} windows / the first one",
                    f"{f['air_close_us_per_reading']:.2f} / "
                    f"{f['air_close_us_per_reading_first']:.2f}",
                    "",
                    "",
                ),
                (
                    "  of which the ring append (NOR emulator, a file here)",
                    f"{f['air_append_us_per_reading']:.2f}",
                    "",
                    "",
                ),
                (
                    f"blocks only, MicroPython tsenc ({p['points']} points, best of 50)",
                    f"{mp_block:.2f}",
                    f"**{mp_block / p['cpython_us']:.1f}x**",
                    f"{mp_block / p['c_us']:.0f}x",
                ),
                (
                    "blocks only, CPython, the same tsenc.py (same bytes)",
                    f"{p['cpython_us']:.2f}",
                    "1.0x",
                    f"{p['cpython_us'] / p['c_us']:.0f}x",
                ),
                (
                    "blocks only, C encoder (native.encode, picks the mode)"
                    + ("" if p["c_same_bytes"] else " [other bytes!]"),
                    f"{p['c_us']:.3f}",
                    f"{p['c_us'] / p['cpython_us']:.2f}x",
                    "1x",
                ),
            ],
        )
    )
    print()
    kb = 1024
    print(
        table(
            ("heap (unix port, 64-bit objects)", "bytes", "KB"),
            [
                (
                    f"free heap of a {HEAP} board (as the launcher leaves it)",
                    int(f["heap_free_at_start"]),
                    f"{f['heap_free_at_start'] / kb:.1f}",
                ),
                (
                    "  once air_bench and mptest are loaded (the figures below start here)",
                    int(f["heap_free_start"]),
                    f"{f['heap_free_start'] / kb:.1f}",
                ),
                (
                    "in use after the imports",
                    int(f["heap_used_imports"]),
                    f"{f['heap_used_imports'] / kb:.1f}",
                ),
                (
                    "in use with the device built (ring, agent, uplink, client)",
                    int(f["heap_used_built"]),
                    f"{f['heap_used_built'] / kb:.1f}",
                ),
                (
                    "**high-water** (sampling, window closes, encode, append)",
                    f"**{int(f['heap_used_peak'])}**",
                    f"{f['heap_used_peak'] / kb:.1f}",
                ),
                (
                    "in use after the run (collected)",
                    int(f["heap_used_steady"]),
                    f"{f['heap_used_steady'] / kb:.1f}",
                ),
                (
                    "**free heap left at the high-water**",
                    f"**{int(f['heap_free_at_peak'])}**",
                    f"{f['heap_free_at_peak'] / kb:.1f}",
                ),
                (
                    f"(a {BOARD_64K} board's free heap, for scale)",
                    rom.free_heap(BOARD_64K),
                    f"{rom.free_heap(BOARD_64K) / kb:.1f}",
                ),
            ],
        )
    )
    print()
    mpy_total = sum(mod.size for mod in product.modules)
    largest = sorted(product.modules, key=lambda mod: -mod.size)[:3]
    print(
        table(
            ("code size", "bytes", "KB"),
            [
                (
                    f".mpy total ({len(product.modules)} modules: firmware/*.py "
                    "but main.py, boot.py)",
                    mpy_total,
                    f"{mpy_total / kb:.1f}",
                ),
                (
                    "ROMFS image (ringtail.device.romfs.build())",
                    product.size,
                    f"{product.size / kb:.1f}",
                ),
                *[(f"  largest: {mod.name}", mod.size, f"{mod.size / kb:.1f}") for mod in largest],
            ],
        )
    )


if __name__ == "__main__":
    main()
