"""mpremote against the board: the raw REPL, exec, the filesystem, Ctrl-C, soft reset."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwtests.board import Board
from ringtail.device.mpremote import MpremoteError

pytestmark = pytest.mark.timeout(90)


def test_exec_returns_what_the_board_prints(board: Board):
    assert board.exec("print(6 * 7)") == "42"
    assert board.eval("[1, 'two', None]") == [1, "two", None]


def test_an_exception_on_the_board_is_reported_with_its_traceback(board: Board):
    with pytest.raises(MpremoteError) as e:
        board.exec("raise ValueError('boom')")
    assert "ValueError: boom" in e.value.output


def test_fs_cp_ls_cat_rm(board: Board, tmp_path: Path):
    data = b"ringtail\n" * 300
    src = tmp_path / "hw_probe.txt"
    src.write_bytes(data)
    board.remove("hw_probe.txt")
    board.mpremote("fs", "cp", str(src), ":hw_probe.txt")
    assert "hw_probe.txt" in board.mpremote("fs", "ls", ":")
    back = tmp_path / "back.txt"
    board.mpremote("fs", "cp", ":hw_probe.txt", str(back))
    assert back.read_bytes() == data
    board.mpremote("fs", "rm", ":hw_probe.txt")
    assert "hw_probe.txt" not in board.mpremote("fs", "ls", ":")


def test_the_board_has_what_flash_verification_uses(board: Board):
    # hashlib.sha256 (else flash falls back to CRC-32), binascii, json, os.statvfs
    out = board.exec(
        "import hashlib, binascii, json, os\n"
        "print(binascii.hexlify(hashlib.sha256(b'abc').digest()).decode())\n"
        "print(json.dumps({'a': [1]}), os.statvfs('/')[0] > 0)"
    )
    assert out.splitlines() == [
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        '{"a": [1]} True',
    ]


def test_soft_reset_without_resume_clears_the_interpreter(board: Board):
    board.exec("hw_marker = 1")
    assert board.eval("'hw_marker' in globals()") is True
    # mpremote without `resume` soft-resets first, as on any board
    out = board.mpremote("exec", "print('hw_marker' in globals())", resume=False)
    assert out.strip() == "False"
    board.mpremote("soft-reset")
    assert board.eval("1 + 1") == 2


def test_ctrl_c_interrupts_a_running_main_py(board: Board, tmp_path: Path):
    """mpremote gets the raw REPL from a board whose main.py never returns: Ctrl-C raises
    KeyboardInterrupt in it, and its globals are left at the REPL, as on any board."""
    old = tmp_path / "old-main.py"
    had_main = "main.py" in board.exec("import os; print(os.listdir())")
    if had_main:
        board.mpremote("fs", "cp", ":main.py", str(old))
    loop = tmp_path / "main.py"
    loop.write_text(
        "import time\nhw_loops = 0\nwhile True:\n    hw_loops += 1\n    time.sleep_ms(20)\n"
    )
    board.mpremote("fs", "cp", str(loop), ":main.py")
    try:
        board.power_cycle()
        assert board.eval("hw_loops") > 0
        assert board.eval("1 + 1") == 2  # and the next session too
    finally:
        if had_main:
            board.mpremote("fs", "cp", str(old), ":main.py")
        else:
            board.remove("main.py")
