"""The virtual board itself (ringtail.device.virtual): what a test rig relies on."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwtests.board import VirtualTestBoard
from ringtail.device import mpremote, romfs
from ringtail.device.virtual import VirtualBoard

pytestmark = [pytest.mark.needs("virtual"), pytest.mark.timeout(90)]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_power_cycle_is_a_new_process_on_the_same_port(board: VirtualTestBoard):
    port, pid, boots = board.port, board.vb.pid, board.boots
    board.exec("hw_ram = 1")
    board.power_cycle()
    assert (board.port, board.boots) == (port, boots + 1)
    assert board.vb.pid != pid
    assert board.eval("'hw_ram' in globals()") is False  # RAM is gone


def test_the_boards_root_is_its_directory(board: VirtualTestBoard):
    board.exec("f = open('/hw_root.txt', 'w')\nf.write('here')\nf.close()")
    assert (board.directory / "hw_root.txt").read_text() == "here"
    assert board.eval("__import__('os').listdir('/')") == ["hw_root.txt"]
    assert board.eval("__import__('sys').path") == ["", ".frozen", "/lib"]  # as on a board


def test_a_romfs_image_is_mounted_at_rom_with_a_boards_free_heap(
    board: VirtualTestBoard, tmp_path: Path
):
    """romfs.img is the board's ROMFS partition: each process (power-on, resets, soft resets)
    reads it into its heap, mounts it at /rom, and pads the heap so that exactly the free
    heap of a fresh `micropython -X heapsize=HEAP` is left."""
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "hwrom.py").write_text("WHERE = 'rom'\n")
    (fw / "main.py").write_text("raise RuntimeError('not in the image')\n")
    built = romfs.build(fw)
    assert [m.name for m in built.modules] == ["hwrom.mpy"]
    image = built.write(board.directory / "romfs.img")
    (board.directory / "main.py").write_text(
        "import gc, hwrom\ngc.collect()\nhw_free = gc.mem_free()\n"
    )
    board.power_cycle()
    free = board.vb.rom_free
    assert free == romfs.free_heap(board.vb.heap)
    assert board.vb.rom_bytes == image.stat().st_size
    line = f"ringtail-vb: romfs {image.stat().st_size} B at /rom, heap "
    assert line in board.console()
    # the process's heap: the image + that free heap + slack for the shim and the GC
    cmdline = Path(f"/proc/{board.vb.pid}/cmdline").read_bytes().split(b"\0")
    assert f"heapsize={romfs.heapsize(image.stat().st_size, free)}".encode() in cmdline
    assert board.eval("__import__('sys').path") == ["", ".frozen", "/rom", "/rom/lib", "/lib"]
    assert board.eval("hwrom.__file__") == "/rom/hwrom.mpy"
    assert board.eval("__import__('os').listdir('/rom')") == ["hwrom.mpy"]
    # main.py started with the free heap of a board (less what importing hwrom took)
    assert free - 2048 < board.eval("hw_free") <= free
    out = board.mpremote("exec", "import hwrom; print(hwrom.WHERE)", resume=False)
    assert out.strip() == "rom"  # a soft reset mounts it again


def test_a_corrupt_romfs_image_is_not_mounted(board: VirtualTestBoard):
    """As a board whose partition holds no valid image: it boots without /rom."""
    (board.directory / "romfs.img").write_bytes(b"not a romfs image" * 100)
    board.power_cycle()
    assert "ringtail-vb: romfs.img not mounted: OSError" in board.console()
    assert "rom" not in board.eval("__import__('os').listdir('/')")
    assert board.eval("1 + 1") == 2


def test_soft_reset_from_the_raw_repl_does_not_run_main_py(board: VirtualTestBoard):
    """As on a board: machine.soft_reset() (or Ctrl-D at the raw prompt, mpremote's soft
    reset) restarts the interpreter and stays in the raw REPL; main.py is not run."""
    (board.directory / "main.py").write_text("hw_main_ran = True\n")
    board.power_cycle()
    assert board.eval("hw_main_ran") is True
    boots = board.boots
    board.mpremote("exec", "--no-follow", "import machine; machine.soft_reset()")
    board.wait_boots(boots + 1)
    assert board.eval("'hw_main_ran' in globals()") is False


def test_an_exit_at_the_friendly_prompt_reboots_into_main_py(board: VirtualTestBoard):
    (board.directory / "main.py").write_text("hw_main_ran = True\n")
    boots = board.boots
    # sys.exit with a status (flash's reset): a hard reset, main.py runs
    board.mpremote("exec", "--no-follow", "import sys; sys.exit(82)")
    board.wait_boots(boots + 1)
    assert board.eval("hw_main_ran") is True


def test_a_crash_loop_stops_and_power_cycle_recovers(board: VirtualTestBoard):
    (board.directory / "main.py").write_text("import sys\nsys.exit(3)\n")
    board.power_cycle()
    wait_for(lambda: board.vb.error is not None, what="the board to give up")
    assert not board.vb.running
    assert "reset itself 5 times" in (board.vb.error or "")
    (board.directory / "main.py").unlink()
    board.power_cycle()
    assert board.eval("1 + 1") == 2


def test_a_chatty_main_py_neither_blocks_nor_blocks_mpremote(board: VirtualTestBoard):
    """With no one on the port its output is dropped (a USB port with no host): main.py
    keeps running, and mpremote still gets the REPL through the noise."""
    (board.directory / "main.py").write_text(
        "hw_n = 0\nwhile True:\n    hw_n += 1\n    print('noise' * 20, hw_n)\n"
    )
    board.power_cycle()

    def printed() -> int:
        counts = re.findall(rb"noise (\d+)\n", board.vb.console()[-4096:])
        return int(counts[-1]) if counts else 0

    # 1000 lines are 100 KB: far more than the pty and the relay could hold had it stalled
    wait_for(lambda: printed() > 1000, what="main.py to print 1000 lines")
    n1 = board.eval("hw_n")
    assert n1 >= printed()
    assert board.eval("hw_n") == n1  # interrupted: the loop is stopped at the REPL


def test_input_sent_during_a_reset_reaches_the_next_process(board: VirtualTestBoard):
    """mpremote started right after a reset request gets the new process, not a hang."""
    for _ in range(5):
        boots = board.boots
        board.mpremote("exec", "--no-follow", "import sys; sys.exit(82)")
        assert board.exec("print('up')", timeout=30) == "up"
        assert board.boots == boots + 1


def test_the_console_log(tmp_path: Path):
    log = tmp_path / "console.log"
    with VirtualBoard(tmp_path / "b", log=log) as vb:
        assert mpremote.exec_(vb.port, "print('logged')").strip() == "logged"
    text = log.read_bytes()
    assert b"ringtail-vb: boot" in text and b"logged" in text


def test_ringtail_device_virtual_runs_a_board_until_sigterm(tmp_path: Path):
    exe = Path(sys.executable).parent / "ringtail"
    proc = subprocess.Popen(
        [str(exe), "device", "virtual", str(tmp_path / "vb")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/pts/")
        assert mpremote.exec_(port, "print(40 + 2)").strip() == "42"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
