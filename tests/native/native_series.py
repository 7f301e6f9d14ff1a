"""Helpers shared by the native/ tests: the reference codec loader and the series every
implementation is checked on."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import struct
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
TSCODEC_PATH = ROOT / "firmware" / "tscodec.py"
# The device's encoder, which tscodec imports as `tsenc` (as on the device).
TSENC_PATH = ROOT / "firmware" / "tsenc.py"


def _load(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_reference():
    if "tsenc" not in sys.modules:
        sys.modules["tsenc"] = _load("tsenc", TSENC_PATH)
    return _load("ringtail_tscodec_ref", TSCODEC_PATH)


def bits(values) -> list[int]:
    """Bit patterns, so NaN payloads and -0.0 compare exactly."""
    return [struct.unpack("<Q", struct.pack("<d", float(v)))[0] for v in values]


def named_series(n: int = 256, seed: int = 7) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Representative and adversarial (timestamps, values) pairs of n points."""
    rng = np.random.default_rng(seed)
    t0 = 1_767_225_600_000  # 2026-01-01 in ms
    steady = t0 + 1000 * np.arange(n, dtype=np.int64)
    jitter = steady + rng.integers(-40, 41, n)
    gaps = steady.copy()
    gaps[n // 3 :] += 3_600_000
    backwards = steady[::-1].copy()
    repeats = np.repeat(steady[: (n + 2) // 3], 3)[:n]
    extreme = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
    extreme[: min(n, 4)] = [-(2**63), 2**63 - 1, 0, -1][: min(n, 4)]
    temp = np.round(21 + np.cumsum(rng.normal(0, 0.02, n)), 2)
    humid = np.round(np.clip(55 + np.cumsum(rng.normal(0, 0.1, n)), 0, 100), 1)
    vib = rng.normal(0, 300, n).round() * (3.3 / 4096)
    vib_dec = rng.normal(0, 300, n).round() * 0.001
    counter = np.cumsum(rng.integers(0, 7, n)).astype(np.float64)
    status = np.where(rng.random(n) < 0.02, 3.0, 1.0)
    special = np.array(
        [math.nan, -0.0, 0.0, math.inf, -math.inf, 5e-324, -2.2250738585072014e-308, 1e308]
        * (n // 8 + 1)
    )[:n]
    payload_nan = np.frombuffer(
        np.array(
            [0x7FF0000000000001, 0xFFF8DEADBEEF0001] * (n // 2 + 1), dtype=np.uint64
        ).tobytes(),
        dtype=np.float64,
    )[:n].copy()
    random_bits = np.frombuffer(rng.bytes(8 * n), dtype=np.float64).copy()
    mixed = temp.copy()
    mixed[::17] = np.nan
    return {
        "steady_temp": (steady, temp),
        "jitter_humid": (jitter, humid),
        "gaps_vibration_adc": (gaps, vib),
        "backwards_vibration_decimal": (backwards, vib_dec),
        "repeats_counter": (repeats, counter),
        "extreme_status": (extreme, status),
        "steady_special": (steady, special),
        "steady_nan_payloads": (steady, payload_nan),
        "jitter_random_bits": (jitter, random_bits),
        "steady_decimal_with_exceptions": (steady, mixed),
        "uniform_random": (steady, rng.random(n)),
        "single": (steady[:1], temp[:1]),
        "empty": (steady[:0], temp[:0]),
    }


V1_BLOCKS_PATH = ROOT / "tests" / "native" / "v1_blocks.json"


def v1_blocks() -> dict[str, bytes]:
    """Format 1 blocks, written by the format 1 encoder from named_series(300, seed=11): what
    devices that predate format 2 send, which readers must keep decoding."""
    data = json.loads(V1_BLOCKS_PATH.read_text())
    return {name: bytes.fromhex(h) for name, h in data["blocks"].items()}
