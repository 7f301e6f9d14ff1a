"""The pytest plugin of the hardware-in-the-loop tests (docs/hwtests.md).

    pytest hwtests                          # the virtual board (default)
    pytest hwtests --board /dev/ttyACM0     # a real ESP32 or RP2040 running MicroPython

Options: `--board virtual|PORT`, `--board-heap` (the virtual board's MicroPython heap; with
a ROMFS image, the free heap besides it),
`--board-gateway HOST[:PORT]` (the gateway as a real board reaches it, written into its
config.json by the flash tests; the uplink test serves its gateway there). Fixture `board`:
a hwtests.board.Board. Marker `needs(feature)`: the test is skipped, with the reason, on a
board without that feature.
hwtests/conftest.py activates all of this for any pytest run that collects hwtests/.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from hwtests.board import FEATURES, Board, SerialBoard, VirtualTestBoard
from ringtail.device import flash, virtual
from ringtail.device.tools import FIRMWARE

_BOARD_KEY = pytest.StashKey[Board]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hwtests", "hardware-in-the-loop tests (hwtests/)")
    group.addoption(
        "--board",
        default="virtual",
        metavar="virtual|PORT",
        help="board under test: 'virtual' (default: the MicroPython unix port behind a pty) "
        "or the serial port of a real ESP32/RP2040 running MicroPython, e.g. /dev/ttyACM0",
    )
    group.addoption(
        "--board-heap",
        default=virtual.HEAP,
        metavar="SIZE",
        help=f"the virtual board's MicroPython heap (default {virtual.HEAP}: 64 KiB on a "
        "32-bit board, scaled for the 64-bit unix port). With the firmware in a ROMFS image, "
        "the free heap the firmware gets besides the image: that of a fresh "
        "`micropython -X heapsize=SIZE`",
    )
    group.addoption(
        "--board-gateway",
        default=None,
        metavar="HOST[:PORT]",
        help="the gateway's address as a real board reaches it (flash tests write it into "
        "config.json, the uplink test's gateway listens on its port; a virtual board uses "
        "127.0.0.1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    port = str(config.getoption("--board"))
    if port.startswith("/") and not os.path.exists(port):
        raise pytest.UsageError(f"--board {port}: no such serial port")
    config.addinivalue_line(
        "markers",
        "needs(feature): skip unless the board under test has it; features: "
        + ", ".join(sorted(FEATURES)),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip a test marked needs(feature) when the board under test lacks the feature."""
    virtual = config.getoption("--board") == "virtual"
    have = VirtualTestBoard.features if virtual else SerialBoard.features
    for item in items:
        for mark in item.iter_markers("needs"):
            missing = [f for f in mark.args if f not in have]
            for feature in mark.args:
                if feature not in FEATURES:
                    raise pytest.UsageError(f"{item.nodeid}: unknown board feature {feature!r}")
            if missing:
                reason = f"needs {missing[0]}: {FEATURES[missing[0]]}"
                item.add_marker(pytest.mark.skip(reason=reason))
                break


@pytest.fixture(scope="session")
def board_option(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--board"))


@pytest.fixture(scope="session")
def _serial_board(board_option: str, pytestconfig: pytest.Config) -> Iterator[Board | None]:
    """A real board is one for the whole session. At the end it gets the whole firmware
    back (tests may have deployed without main.py) and is reset."""
    if board_option == "virtual":
        yield None
        return
    gw = pytestconfig.getoption("--board-gateway")
    b = SerialBoard(board_option, gateway=flash.parse_gateway(gw) if gw else None)
    b.wait_ready()
    saved = b.exec("try:\n    print(open('config.json').read())\nexcept OSError:\n    pass")
    if b.gateway is None:
        # flash refuses a real board without a gateway; take the board's own
        try:
            old = json.loads(saved)["gateway"]
            b.gateway = (str(old["host"]), int(old.get("port", flash.DEFAULT_GATEWAY_PORT)))
        except (ValueError, KeyError, TypeError):
            raise pytest.UsageError(
                f"--board {board_option}: its config.json names no gateway; give "
                "--board-gateway HOST[:PORT] (the test machine as the board reaches it)"
            ) from None
    yield b
    # the board's own config.json (Wi-Fi and all) back, then the whole firmware
    if saved:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "config.json"
            cfg.write_text(saved + "\n")
            b.mpremote("fs", "cp", str(cfg), ":config.json")
    b.deploy()


@pytest.fixture
def board(
    request: pytest.FixtureRequest,
    board_option: str,
    _serial_board: Board | None,
    tmp_path: Path,
    pytestconfig: pytest.Config,
) -> Generator[Board, None, None]:
    """The board under test. A virtual board is new for each test (its directory is under
    tmp_path); a real one is shared by the session."""
    if _serial_board is not None:
        request.node.stash[_BOARD_KEY] = _serial_board
        yield _serial_board
        return
    b = VirtualTestBoard(tmp_path / "board", heap=pytestconfig.getoption("--board-heap"))
    request.node.stash[_BOARD_KEY] = b
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def gateway(board: Board, pytestconfig: pytest.Config) -> tuple[str, int] | None:
    """The gateway address for config.json: --board-gateway, else None (flash's default:
    the board's own config.json, or 127.0.0.1:5683 on a virtual board)."""
    gw = pytestconfig.getoption("--board-gateway")
    return flash.parse_gateway(gw) if gw else None


@pytest.fixture(scope="session")
def firmware() -> Path:
    if not any(FIRMWARE.glob("*.py")):
        pytest.skip(f"no firmware sources in {FIRMWARE}")
    return FIRMWARE


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report shows the board's console and what flash said."""
    report = yield
    b = item.stash.get(_BOARD_KEY, None)
    if b is not None and report.failed:
        console = b.console()
        if console:
            report.sections.append(("board console (last 4000 characters)", console[-4000:]))
        if b.log:
            report.sections.append(("ringtail device flash", "\n".join(b.log[-200:])))
    return report
