"""Benchmarks run by `just bench`: each `bench/bench_*.py` defines `main() -> None`.

Figures are quoted as ratios against a peer measured in the same run: these machines are
shared and noisy, so absolute numbers from two runs are not comparable.
"""
