"""Batch validation cost against decoding alone (cbor2) and against pycddl.

    just bench protocol

The gateway runs `protocol.parse_batch` on every request; this says what that costs per
batch relative to the cheapest thing it could do (cbor2.loads, no checks) and to the
schema-driven alternative (pycddl), measured in the same run on the same bytes. The
"Python scan" column is parse_batch with the reference scan (protocol.cbor_scan.scan_python)
in place of the C one (native.cbor_scan), and the scan columns time the scan alone.
"""

from __future__ import annotations

import timeit

import cbor2
import pycddl

import native
import protocol
import protocol.decoding
from protocol.cbor_scan import scan, scan_python
from protocol.constants import MAX_DEPTH


def _batches() -> dict[str, bytes]:
    def batch(series):
        return cbor2.dumps({0: 1, 1: "bench-device", 2: 1, 3: 0, 4: 0, 6: series}, canonical=True)

    def plain(name, n):
        return {0: name, 1: [i * 1_000_000 for i in range(n)], 2: [20 + i / 100 for i in range(n)]}

    block = native.encode(
        [i * 1_000_000 for i in range(256)], [21.37 + (i % 9) / 100 for i in range(256)]
    )
    return {
        "4 series x 64 points": batch([plain(f"m{i}", 64) for i in range(4)]),
        "1 series x 1000 points": batch([plain("m", 1000)]),
        "8 codec blocks of 256": batch([{0: f"m{i}", 3: block, 4: 256} for i in range(8)]),
    }


def _per_call_us(fn, data: bytes) -> float:
    timer = timeit.Timer(lambda: fn(data))
    n, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=n)) / n * 1e6


def _parse_with_python_scan_us(data: bytes) -> float:
    active = protocol.decoding.scan
    protocol.decoding.scan = scan_python
    try:
        return _per_call_us(protocol.parse_batch, data)
    finally:
        protocol.decoding.scan = active


def main() -> None:
    schema = pycddl.Schema("root = telemetry-batch\n" + protocol.schema_text())
    print("| batch | bytes | cbor2.loads µs | parse_batch µs | pycddl µs ", end="")
    print("| parse/loads | pycddl/parse | parse_batch, Python scan µs | Python/C parse ", end="")
    print("| scan C µs | scan Python µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, data in _batches().items():
        loads = _per_call_us(cbor2.loads, data)
        parse = _per_call_us(protocol.parse_batch, data)
        cddl = _per_call_us(schema.validate_cbor, data)
        parse_py = _parse_with_python_scan_us(data)
        scan_c = _per_call_us(lambda d: scan(d, MAX_DEPTH), data)
        scan_py = _per_call_us(lambda d: scan_python(d, MAX_DEPTH), data)
        print(
            f"| {name} | {len(data)} | {loads:.1f} | {parse:.1f} | {cddl:.1f} "
            f"| {parse / loads:.1f}x | {cddl / parse:.1f}x | {parse_py:.1f} "
            f"| {parse_py / parse:.2f}x | {scan_c:.2f} | {scan_py:.1f} |"
        )
