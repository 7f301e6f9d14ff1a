"""What survives a power cycle: files, and the flash ring in the board's NOR flash (on the
virtual board, the NOR emulator's image file ringtail-flash.img)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from hwtests.board import RING_OPEN, Board, VirtualTestBoard, ring_records

pytestmark = pytest.mark.timeout(90)

_OPEN = RING_OPEN
records = ring_records


def deploy_without_agent(board: Board) -> None:
    """The firmware's modules without main.py: nothing else touches the ring."""
    board.deploy(exclude=("main.py",), device="hwtest-ring", do_reset=False)
    board.power_cycle()


def test_files_survive_a_power_cycle(board: Board, tmp_path: Path):
    src = tmp_path / "hw_keep.bin"
    src.write_bytes(bytes(range(256)) * 8)
    board.mpremote("fs", "cp", str(src), ":hw_keep.bin")
    board.power_cycle()
    back = tmp_path / "back.bin"
    board.mpremote("fs", "cp", ":hw_keep.bin", str(back))
    assert back.read_bytes() == src.read_bytes()
    board.remove("hw_keep.bin")


def test_ram_does_not_survive_a_power_cycle(board: Board):
    board.exec("hw_ram = 1")
    board.power_cycle()
    assert board.eval("'hw_ram' in globals()") is False


@pytest.mark.needs("hard-reset")
def test_after_a_hard_reset_the_port_comes_back(board: Board):
    """machine.reset() drops the USB device; it re-enumerates at the same path (if another
    USB serial device took that path meanwhile, use a /dev/serial/by-id/ path)."""
    board.power_cycle()
    assert board.eval("1 + 1") == 2


def test_the_flash_ring_survives_a_power_cycle_and_the_boot_number_grows(board: Board, firmware):
    deploy_without_agent(board)
    tag = b"hw-%d" % time.time_ns()
    out = board.exec(_OPEN + f"r.append({tag!r} + b'x' * 10)\nprint(r.boot)")
    boot1 = int(out)
    board.power_cycle()
    out = board.exec(_OPEN + "print(r.boot)\nhw_print_records()")
    boot2 = int(out.splitlines()[0])
    assert boot2 > boot1
    mine = [rec for rec in records(out) if rec[2].startswith(tag)]
    assert len(mine) == 1, out
    assert mine[0][0] == boot1
    assert mine[0][2] == tag + b"x" * 10


@pytest.mark.needs("host-files")
def test_the_virtual_boards_flash_is_the_nor_emulators_image(board: VirtualTestBoard, firmware):
    deploy_without_agent(board)
    board.exec(_OPEN + "r.append(b'on the image')")
    image = board.directory / "ringtail-flash.img"
    assert image.stat().st_size == 64 * 4096  # hal_unix: 64 sectors of 4 KiB
    before = image.read_bytes()
    assert b"on the image" in before
    board.power_cycle()
    assert image.read_bytes() == before  # a power cycle alone changes nothing


@pytest.mark.needs("power-cut", "host-files")
def test_a_power_cut_mid_write_loses_no_acknowledged_record(board: VirtualTestBoard, firmware):
    """main.py appends records as fast as it can and prints each one's identity once
    append() has returned (durable); the power is cut (SIGKILL) in the middle. After the
    next boot every printed record reads back intact (DESIGN.md invariant 2)."""
    deploy_without_agent(board)
    (board.directory / "main.py").write_text(
        _OPEN
        + "i = 0\n"
        + "while i < 3000:\n"  # well inside the ring: nothing may be dropped
        + "    s = r.append(b'rec-%d-' % i + b'z' * (i % 40))\n"
        + "    print('ACK', r.boot, s, i)\n"
        + "    i += 1\n"
    )
    board.power_cycle()
    deadline = time.monotonic() + 30
    while board.vb.console().count(b"ACK ") < 200:
        assert time.monotonic() < deadline, board.console()[-2000:]
        time.sleep(0.01)
    (board.directory / "main.py").unlink()  # the next boot leaves the ring alone
    board.power_cycle()  # the cut: the writer is somewhere in an append (or its print)
    acked = {
        (int(b), int(s)): int(i)
        for b, s, i in re.findall(r"ACK (\d+) (\d+) (\d+)\n", board.console())
    }
    assert len(acked) >= 200
    found = {(b, s): p for b, s, p in records(board.exec(_OPEN + "hw_print_records()"))}
    lost = [
        (ident, i)
        for ident, i in acked.items()
        if found.get(ident) != b"rec-%d-" % i + b"z" * (i % 40)
    ]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged records lost: {lost[:5]}"
