from __future__ import annotations

from pathlib import Path

import pytest

from . import mprun

_METRICS: dict[str, str] = {}


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Every firmware and test module compiled once: (directory, errors by file name)."""
    out = tmp_path_factory.mktemp("mpy")
    sizes, errors = mprun.compile_all(out)
    for name, size in sizes.items():
        _METRICS[f"mpy_size[{name}]"] = str(size)
    return out, errors


@pytest.fixture(scope="session")
def mpy_dir(compiled: tuple[Path, dict[str, str]]) -> Path:
    return compiled[0]


@pytest.fixture
def run_mp(mpy_dir: Path, tmp_path: Path):
    """Run one test of a firmware/tests script; fail with its output; keep its metrics."""

    def go(script: str, name: str) -> mprun.Result:
        res = mprun.run(mpy_dir, tmp_path, script, name)
        mprun.check(res, name)
        for k, v in res.metrics.items():
            _METRICS[f"{script}.{k}"] = v
        return res

    return go


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _METRICS:
        terminalreporter.section("firmware metrics")
        for k in sorted(_METRICS):
            terminalreporter.write_line(f"{k} = {_METRICS[k]}")
