"""native/: block size and speed against gorillacompression, zstd, lz4 and ClickHouse's codecs
(chDB), and CRC-32C throughput against the crc32c and google-crc32c packages.

`just bench native`; the CRC-32C table alone: `python -m bench.bench_native crc`. Every
figure is measured in this run on the same series; compare the ratios, not absolute numbers
(the machine is shared).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import util

import numpy as np

import native

N = 100_000
BLOCK = 256  # points per block a device sends
T0 = 1_767_225_600_000  # 2026-01-01, ms


def synthetic() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(42)
    steady = T0 + 1000 * np.arange(N, dtype=np.int64)
    jitter = steady + rng.integers(-30, 31, N)
    fast = T0 + np.arange(N, dtype=np.int64)  # 1 kHz vibration sampling, ms clock
    return {
        "temperature (steady ts)": (
            steady,
            np.round(21 + np.cumsum(rng.normal(0, 0.01, N)) + np.sin(np.arange(N) / 5e3), 2),
        ),
        "humidity (jittered ts)": (
            jitter,
            np.round(np.clip(55 + np.cumsum(rng.normal(0, 0.05, N)), 0, 100), 1),
        ),
        "vibration ADC x 3.3/4096": (fast, np.round(rng.normal(0, 200, N)) * (3.3 / 4096)),
        "vibration ADC x 0.001 g": (fast, np.round(rng.normal(0, 200, N)) * 0.001),
        "counter": (steady, np.cumsum(rng.poisson(3, N)).astype(np.float64)),
        "status codes": (
            steady,
            np.repeat(rng.choice([0.0, 1.0, 2.0, 4.0], N // 500 + 1), 500)[:N],
        ),
        # Not a sensor: full-precision doubles, to measure the XOR (Chimp) mode.
        "random walk, full doubles": (steady, np.cumsum(rng.normal(0, 1, N))),
    }


def pvlib_series() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Hourly measured weather from the TMY3 files inside the pvlib wheel (8,760 h each)."""
    spec = util.find_spec("pvlib")
    if spec is None or not spec.submodule_search_locations:
        return {}
    data = pathlib.Path(next(iter(spec.submodule_search_locations))) / "data"
    columns = {
        "GHI (W/m^2)": "GHI",
        "Dry-bulb (C)": "air temperature",
        "RHum (%)": "humidity",
        "Pressure (mbar)": "pressure",
        "Wspd (m/s)": "wind speed",
    }
    values: dict[str, list[float]] = {v: [] for v in columns.values()}
    for name in ("723170TYA.CSV", "703165TY.csv"):
        with open(data / name, newline="") as f:
            next(f)  # station line
            for row in csv.DictReader(f):
                for col, key in columns.items():
                    values[key].append(float(row[col]))
    n = len(values["GHI"])
    ts = T0 + 3_600_000 * np.arange(n, dtype=np.int64)
    return {f"pvlib TMY3 {k}": (ts, np.array(v)) for k, v in values.items()}


def best_time(fn: Callable[[], object], min_total_s: float = 0.3, reps: int = 3) -> float:
    """Smallest per-call time over `reps` batches, each lasting at least min_total_s / reps."""
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-7)
    loops = max(1, int(min_total_s / reps / once))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - t) / loops)
    return best


def shuffle(raw: bytes) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(-1, 8).T.tobytes()


def unshuffle(raw: bytes) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(8, -1).T.tobytes()


def general_purpose(ts: np.ndarray, vs: np.ndarray) -> dict[str, tuple[int, float, float]]:
    """{name: (bytes, encode s, decode s)} for zstd and lz4 on the raw arrays."""
    import lz4.frame
    import zstandard

    out = {}
    raw = (ts.tobytes(), vs.tobytes())
    ident = bytes  # no shuffle: the compressors take the raw bytes

    def measure(name, compress, decompress, shuf, enc_budget_s=0.3):
        pre, post = (shuffle, unshuffle) if shuf else (ident, ident)
        blobs = [compress(pre(r)) for r in raw]
        enc = best_time(lambda: [compress(pre(r)) for r in raw], enc_budget_s)
        dec = best_time(lambda: [post(decompress(b)) for b in blobs])
        out[name + (" +shuffle" if shuf else "")] = (sum(map(len, blobs)), enc, dec)

    for shuf in (False, True):
        for level in (3, 19):
            cctx, dctx = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
            # zstd-19 compresses slowly: one timed call is enough.
            measure(f"zstd-{level}", cctx.compress, dctx.decompress, shuf, 0.2 if level < 19 else 0)
        measure("lz4", lz4.frame.compress, lz4.frame.decompress, shuf)
    return out


def gorilla(ts: np.ndarray, vs: np.ndarray) -> tuple[float, float]:
    """(bytes, encode s); the package takes 31-bit timestamps, so it gets seconds since the
    first point when the series allows (its best case), else ms; nan if neither fits."""
    import gorillacompression as gc

    rel = ts - ts[0]
    if not np.any(rel % 1000):
        rel //= 1000
    if rel.min() < 0 or rel.max() >= 2**31:
        return float("nan"), float("nan")
    pairs = list(zip(rel.tolist(), vs.tolist(), strict=True))
    t = time.perf_counter()
    content = gc.PairsEncoder.encode_all(pairs)
    return len(content["encoded"]), time.perf_counter() - t


TIME_CODECS = {
    "DoubleDelta": "DoubleDelta",
    "DoubleDelta+ZSTD": "DoubleDelta, ZSTD",
    "Delta+LZ4": "Delta, LZ4",
    "Delta+ZSTD": "Delta, ZSTD",
}
VALUE_CODECS = {
    "ALP": "ALP",
    "ALP+ZSTD": "ALP, ZSTD",
    "Gorilla": "Gorilla",
    "Gorilla+ZSTD": "Gorilla, ZSTD",
    "FPC": "FPC",
    "FPC+ZSTD": "FPC, ZSTD",
    "ZSTD": "ZSTD",
}


def clickhouse(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, int]]:
    """{series: {column codec: compressed bytes}} from chDB, wide parts after OPTIMIZE FINAL."""
    from chdb import session

    out: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sess = session.Session(os.path.join(tmp, "db"))
        sess.query("SET enable_alp_codec = 1")
        cols = [f"t{i} Int64 CODEC({c})" for i, c in enumerate(TIME_CODECS.values())]
        cols += [f"v{i} Float64 CODEC({c})" for i, c in enumerate(VALUE_CODECS.values())]
        select = [f"ts AS t{i}" for i in range(len(TIME_CODECS))]
        select += [f"v AS v{i}" for i in range(len(VALUE_CODECS))]
        for k, (name, (ts, vs)) in enumerate(series.items()):
            rows = np.zeros(len(ts), dtype=[("ts", "<i8"), ("v", "<f8")])
            rows["ts"], rows["v"] = ts, vs
            path = os.path.join(tmp, f"s{k}.bin")
            rows.tofile(path)
            sess.query(
                f"CREATE TABLE s{k} ({', '.join(cols)}) ENGINE = MergeTree ORDER BY tuple() "
                "SETTINGS min_bytes_for_wide_part = 0, min_rows_for_wide_part = 0"
            )
            sess.query(
                f"INSERT INTO s{k} SELECT {', '.join(select)} "
                f"FROM file('{path}', 'RowBinary', 'ts Int64, v Float64')"
            )
            sess.query(f"OPTIMIZE TABLE s{k} FINAL")
            res = sess.query(
                "SELECT name, data_compressed_bytes FROM system.columns "
                f"WHERE database = currentDatabase() AND table = 's{k}'",
                "CSV",
            )
            sizes = {}
            for line in str(res).strip().splitlines():
                col, size = line.replace('"', "").split(",")
                codecs = TIME_CODECS if col[0] == "t" else VALUE_CODECS
                sizes[("time " if col[0] == "t" else "value ") + list(codecs)[int(col[1:])]] = int(
                    size
                )
            out[name] = sizes
        sess.close()
    return out


def ours(ts: np.ndarray, vs: np.ndarray) -> dict[str, float]:
    block = native.encode(ts, vs)
    t2, v2 = native.decode(block)
    if not (np.array_equal(t2, ts) and np.array_equal(v2.view(np.uint64), vs.view(np.uint64))):
        raise RuntimeError("native codec did not round-trip")
    small = sum(
        len(native.encode(ts[i : i + BLOCK], vs[i : i + BLOCK])) for i in range(0, len(ts), BLOCK)
    )
    return {
        "bytes": len(block),
        "bytes256": small,
        "mode": {0: "xor", 1: "decimal", 2: "scaled"}[block[1] & 3],
        "enc": best_time(lambda: native.encode(ts, vs)),
        "dec": best_time(lambda: native.decode(block)),
    }


CRC_SIZES = (64, 4096, 1 << 20)
CRC_ROUNDS = 5  # rounds over all implementations; each cell is the median round


def crc_table() -> list[str]:
    """CRC-32C GB/s of every native path and the two PyPI packages, one call per buffer.

    Each round times every implementation (best of 3 batches, ~0.1 s each) in turn, so a
    burst of load on the shared machine hits one round, not one implementation; cells are
    the median over CRC_ROUNDS rounds, and ratios to the crc32c package are per round
    (median, [min-max])."""
    import crc32c as crc32c_pkg
    import google_crc32c

    impls = {"native (dispatch)": native.crc32c}
    for label, name in (
        ("sse4.2 3-way", "hw"),
        ("pclmul", "pclmul"),
        ("vpclmul", "fold"),
        ("portable", "portable"),
    ):
        with contextlib.suppress(LookupError):
            impls[label] = native._crc32c_impl(name)
    impls |= {"crc32c pkg": crc32c_pkg.crc32c, "google-crc32c": google_crc32c.value}
    ours = [k for k in impls if k not in ("crc32c pkg", "google-crc32c", "portable")]
    rows = [
        "| size | "
        + " | ".join(f"{k} GB/s" for k in impls)
        + " | "
        + " | ".join(f"{k} / crc32c pkg" for k in ours)
        + " |",
        "|---|" + "---|" * (len(impls) + len(ours)),
    ]
    rng = np.random.default_rng(1)
    for size in CRC_SIZES:
        data = rng.bytes(size)
        want = crc32c_pkg.crc32c(data)
        for name, fn in impls.items():
            if fn(data) != want:
                raise RuntimeError(f"{name} disagrees")
        rounds: dict[str, list[float]] = {k: [] for k in impls}
        for _ in range(CRC_ROUNDS):
            for name, fn in impls.items():
                budget = 0.05 if name == "portable" else 0.3
                t = best_time(functools.partial(fn, data), budget, 3)
                rounds[name].append(size / t / 1e9)
        speeds = {k: float(np.median(v)) for k, v in rounds.items()}
        ratios = []
        for k in ours:
            r = [a / b for a, b in zip(rounds[k], rounds["crc32c pkg"], strict=True)]
            ratios.append(f"{np.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}]")
        rows.append(
            f"| {size} B | "
            + " | ".join(f"{v:.2f}" for v in speeds.values())
            + " | "
            + " | ".join(ratios)
            + " |"
        )
    return rows


def crc_main() -> None:
    """Only the CRC-32C table: `python -m bench.bench_native crc`."""
    print(f"CRC-32C backend: {native.CRC32C_BACKEND}; {CRC_ROUNDS} rounds, medians\n")
    print("\n".join(crc_table()), flush=True)


def main() -> None:
    series = synthetic() | pvlib_series()
    crc_main()
    print()
    ch = clickhouse(series)
    size_rows = [
        "| series | n | ours B/pt (mode) | 256-pt blocks / own | best ClickHouse pair B/pt "
        "| zstd/lz4 best B/pt | gorilla B/pt | ours / best peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    speed_rows = [
        "| series | ours enc Mpt/s | ours dec Mpt/s | zstd-3 dec Mpt/s | lz4 dec Mpt/s "
        "| dec vs zstd-3 | dec vs lz4 | enc vs zstd-3 | gorilla enc Mpt/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (ts, vs) in series.items():
        n = len(ts)
        me = ours(ts, vs)
        gp = general_purpose(ts, vs)
        g_bytes, g_enc = gorilla(ts, vs)
        sizes = ch[name]
        t_best = min((v, k) for k, v in sizes.items() if k.startswith("time"))
        v_best = min((v, k) for k, v in sizes.items() if k.startswith("value"))
        ch_bytes = t_best[0] + v_best[0]
        ch_name = f"{t_best[1][5:]} / {v_best[1][6:]}"
        gp_name, (gp_bytes, _, _) = min(gp.items(), key=lambda kv: kv[1][0])
        best_peer = min(b for b in (ch_bytes, gp_bytes, g_bytes) if b == b)  # skip nan
        size_rows.append(
            f"| {name} | {n} | {me['bytes'] / n:.3f} ({me['mode']}) "
            f"| {me['bytes256'] / me['bytes']:.2f}x | {ch_bytes / n:.3f} ({ch_name}) "
            f"| {gp_bytes / n:.3f} ({gp_name}) | {g_bytes / n:.3f} "
            f"| **{me['bytes'] / best_peer:.2f}x** |"
        )
        z3, lz = gp["zstd-3"], gp["lz4"]
        speed_rows.append(
            f"| {name} | {n / me['enc'] / 1e6:.0f} | {n / me['dec'] / 1e6:.0f} "
            f"| {n / z3[2] / 1e6:.0f} | {n / lz[2] / 1e6:.0f} | {z3[2] / me['dec']:.1f}x "
            f"| {lz[2] / me['dec']:.1f}x | {z3[1] / me['enc']:.1f}x | {n / g_enc / 1e6:.2f} |"
        )
        print(size_rows[-1], flush=True)
    print()
    print("\n".join(size_rows), "\n")
    print("\n".join(speed_rows))


if __name__ == "__main__":
    if sys.argv[1:] == ["crc"]:
        crc_main()
    else:
        main()
