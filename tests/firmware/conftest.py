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


@pytest.fixture(scope="session")
def romfs(mpy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The compiled modules as one ROMFS image, and the free heap a 64 KB board starts with."""
    image = mprun.build_romfs(mpy_dir, tmp_path_factory.mktemp("romfs") / "firmware.romfs")
    _METRICS["romfs_image_bytes"] = str(image.stat().st_size)
    return image, mprun.free_heap_of_a_64k_board()


@pytest.fixture
def run_mp(mpy_dir: Path, romfs: tuple[Path, int], tmp_path: Path):
    """Run one test of a firmware/tests script from the ROMFS image with a 64 KB board's free
    heap; fail with its output; keep its metrics."""

    def go(script: str, name: str) -> mprun.Result:
        res = mprun.run(mpy_dir, tmp_path, script, name, romfs=romfs)
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
