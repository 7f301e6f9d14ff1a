"""`ringtail device flash`: compile, deploy (a ROMFS image, or .mpy files), configure,
verify, reset."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwtests.board import Board, VirtualTestBoard
from ringtail.device import flash, romfs
from ringtail.device.mpremote import MpremoteError

pytestmark = pytest.mark.timeout(120)

MODES = [pytest.param(False, id="romfs"), pytest.param(True, id="files")]


def board_files(board: Board) -> set[str]:
    return set(board.eval("__import__('os').listdir()"))


def fresh(board: Board, code: str) -> str:
    """Run `code` after a soft reset (mpremote without resume): a clean interpreter, main.py
    not run, the ROMFS partition (or romfs.img) mounted again as after a reset."""
    return board.mpremote("exec", code, resume=False).strip()


def needs_romfs(result: flash.FlashResult) -> None:
    if result.mode == flash.FILES:
        pytest.skip("the board has no ROMFS partition: flash deployed .mpy files")


def test_flash_deploys_the_modules_as_a_romfs_image_and_main_py_as_source(
    board: Board, firmware: Path, gateway: tuple[str, int] | None
):
    result = board.deploy(firmware=firmware, device="hwtest-1", gateway=gateway, do_reset=False)
    needs_romfs(result)
    sources = {p.name for p in firmware.glob("*.py")}
    modules = {n[:-3] + ".mpy" for n in sources if n not in flash.SOURCE_FILES}
    # what was built is the same in every mode: each module's .mpy, main.py as source
    assert {a.name for a in result.artifacts} == modules | {"main.py"}
    assert result.image is not None
    assert {m.name: m.sha256 for m in result.image.modules} == {
        a.name: a.sha256 for a in result.artifacts if a.name in modules
    }
    assert result.image.data == romfs.build(firmware).data  # one way to build it
    files = board_files(board)
    assert not modules & files  # no module in the filesystem: it would shadow /rom
    assert {"main.py", "config.json", "manifest.json"} <= files
    image_sha = hashlib.sha256(result.image.data).hexdigest()
    if result.mode == flash.ROMFS_FILE:
        assert board.kind == "virtual"
        assert "romfs.img" in files
        assert result.verified["romfs.img"] == image_sha
    else:
        assert result.verified["ROMFS0"] == image_sha  # the partition's bytes
    main = next(a for a in result.artifacts if a.name == "main.py")
    assert result.verified["main.py"] == main.sha256
    # after a (soft) reset the modules import from /rom, main.py stays a file
    out = fresh(board, "import sys, store, ring\nprint(store.__file__, ring.__file__, sys.path)")
    assert out.split()[:2] == ["/rom/store.mpy", "/rom/ring.mpy"]
    path = ast.literal_eval(out.split(" ", 2)[2])
    assert path[0] == "" and "/rom" in path  # the filesystem first, as MicroPython >= 1.25
    if board.kind == "virtual":
        assert path == ["", ".frozen", "/rom", "/rom/lib", "/lib"]
    cfg = json.loads(board.mpremote("fs", "cat", ":config.json"))
    assert cfg["device"] == "hwtest-1"
    if board.kind == "virtual":
        assert cfg["gateway"] == {"host": "127.0.0.1", "port": 5683}
    manifest = json.loads(board.mpremote("fs", "cat", ":manifest.json"))
    assert manifest["mode"] == result.mode
    assert manifest["files"] == {a.name: a.sha256 for a in result.deployed}
    assert manifest["romfs"]["modules"] == {m.name: m.sha256 for m in result.image.modules}
    assert manifest["romfs"]["sha256"] == image_sha
    assert any("[1/" in line for line in board.log)  # progress, a line per step


def test_flash_with_files_deploys_compiled_modules_and_verifies_them(
    board: Board, firmware: Path, gateway: tuple[str, int] | None
):
    result = board.deploy(
        firmware=firmware, device="hwtest-1", gateway=gateway, do_reset=False, files=True
    )
    assert result.mode == flash.FILES
    sources = {p.name for p in firmware.glob("*.py")}
    expected = {
        n if n in flash.SOURCE_FILES else n[:-3] + ".mpy" for n in sources
    }  # main.py stays source
    assert {a.name for a in result.artifacts} == expected
    assert expected | {"config.json", "manifest.json"} <= board_files(board)
    # what verification compared is what was built, byte for byte
    for a in result.artifacts:
        assert result.verified[a.name] == a.sha256
    # the modules import from their .mpy in the filesystem (before /rom, if there is one)
    assert board.exec("import store, ring\nprint(store.__file__, ring.__file__)").split() in (
        ["store.mpy", "ring.mpy"],
        ["/store.mpy", "/ring.mpy"],
    )
    manifest = json.loads(board.mpremote("fs", "cat", ":manifest.json"))
    assert manifest["mode"] == "files"
    assert manifest["files"] == {a.name: a.sha256 for a in result.artifacts}
    assert any("[1/" in line for line in board.log)


@pytest.mark.parametrize("files", MODES)
def test_flash_resets_the_board_into_the_new_firmware(board: Board, tmp_path: Path, files: bool):
    """A firmware whose main.py leaves a mark: after flash, the board has booted it."""
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "hwmark.py").write_text("def mark():\n    return 'hw-booted'\n")
    (fw / "main.py").write_text("import hwmark\nhw_mark = hwmark.mark()\n")
    board.remove("main.py", "hwmark.mpy")
    boots = getattr(board, "boots", 0)
    result = board.deploy(firmware=fw, device="hwtest-2", files=files)
    assert result.reset
    if isinstance(board, VirtualTestBoard):
        board.wait_boots(boots + 2)  # flash's probe soft-resets, then the reset
    board.wait_ready()
    assert board.eval("hw_mark") == "hw-booted"
    where = board.eval("hwmark.__file__")
    assert where.startswith("/rom/") if result.mode != flash.FILES else "/rom" not in where
    board.remove("main.py", "hwmark.mpy", "manifest.json", "romfs.img")


@pytest.mark.parametrize("files", MODES)
def test_a_second_flash_copies_only_what_changed(board: Board, firmware: Path, files: bool):
    board.deploy(firmware=firmware, device="hwtest-3", do_reset=False, files=files)
    again = board.deploy(firmware=firmware, device="hwtest-3", do_reset=False, files=files)
    assert again.copied == ["config.json", "manifest.json"]
    partition = {"ROMFS0"} if again.mode == flash.ROMFS else set()
    assert set(again.unchanged) == {a.name for a in again.deployed} | partition
    full = board.deploy(
        firmware=firmware, device="hwtest-3", do_reset=False, full=True, files=files
    )
    assert len(full.copied) == len(full.deployed) + 2 + len(partition)


@pytest.mark.parametrize("files", MODES)
def test_a_tampered_or_missing_file_fails_verification(board: Board, firmware: Path, files: bool):
    result = board.deploy(firmware=firmware, device="hwtest-4", do_reset=False, files=files)
    expected = {a.name: a.sha256 for a in result.deployed}
    # a write that went wrong (one byte) and a copy that never landed; a board with a ROMFS
    # partition keeps only main.py in its filesystem (the partition: test_romfs.py)
    tampered, missing = {
        flash.FILES: ("store.mpy", "ring.mpy"),
        flash.ROMFS_FILE: ("romfs.img", "main.py"),
        flash.ROMFS: ("main.py", None),
    }[result.mode]
    code = (
        f"f = open({tampered!r}, 'r+b')\nb = f.read(1)\nf.seek(0)\n"
        "f.write(bytes([b[0] ^ 0xFF]))\nf.close()\n"
    )
    if missing:
        code += f"import os\nos.remove({missing!r})"
    board.exec(code)
    with pytest.raises(flash.VerifyError) as e:
        flash.verify(board.port, expected)
    assert len(e.value.problems) == 1 + bool(missing)
    text = str(e.value)
    assert f"{tampered}:" in text and "on the board" in text
    if missing:
        assert f"{missing}: missing on the board" in text
    # the command line says so too, and fails
    out = ringtail("device", "verify", board.port)
    assert out.returncode == 1
    assert "verification failed" in out.stderr and f"{tampered}:" in out.stderr
    # and a flash repairs it: the damaged files differ, so they are copied again
    fixed = board.deploy(firmware=firmware, device="hwtest-4", do_reset=False, files=files)
    assert {tampered, missing or tampered} <= set(fixed.copied)
    assert ringtail("device", "verify", board.port).returncode == 0


def test_flash_removes_what_would_shadow_or_outlive_the_firmware(board: Board, tmp_path: Path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "hwa.py").write_text("WHO = 'mpy'\n")
    (fw / "hwb.py").write_text("X = 1\n")
    board.deploy(firmware=fw, device="hwtest-5", do_reset=False, files=True)
    # a stale source next to the .mpy would win the import
    stale = tmp_path / "hwa.py"
    stale.write_text("WHO = 'stale source'\n")
    board.mpremote("fs", "cp", str(stale), ":hwa.py")
    (fw / "hwb.py").unlink()  # gone from the firmware: must go from the board
    result = board.deploy(firmware=fw, device="hwtest-5", do_reset=False, files=True)
    assert result.removed == ["hwa.py", "hwb.mpy"]
    files = board_files(board)
    assert "hwa.py" not in files and "hwb.mpy" not in files
    assert board.exec("import hwa\nprint(hwa.WHO)") == "mpy"
    board.remove("hwa.mpy", "manifest.json")


def test_a_romfs_flash_removes_the_modules_a_files_flash_left(board: Board, tmp_path: Path):
    """'' is before /rom on sys.path: a module left in the filesystem (by a flash with
    --files, or by hand) would shadow the image's, so the ROMFS flash removes it."""
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "hwa.py").write_text("WHO = 'rom'\n")
    (fw / "hwb.py").write_text("X = 1\n")
    board.deploy(firmware=fw, device="hwtest-5", do_reset=False, files=True)
    stale = tmp_path / "hwa.py"
    stale.write_text("WHO = 'stale source'\n")
    board.mpremote("fs", "cp", str(stale), ":hwa.py")
    (fw / "hwb.py").unlink()
    result = board.deploy(firmware=fw, device="hwtest-5", do_reset=False)
    needs_romfs(result)
    assert result.removed == ["hwa.mpy", "hwa.py", "hwb.mpy"]
    assert not {"hwa.mpy", "hwa.py", "hwb.mpy"} & board_files(board)
    out = fresh(board, "import hwa\nprint(hwa.WHO, hwa.__file__)")
    assert out == "rom /rom/hwa.mpy"
    with pytest.raises(MpremoteError, match="ImportError"):
        board.exec("import hwb")
    # and back: a flash with --files removes the virtual board's romfs.img
    back = board.deploy(firmware=fw, device="hwtest-5", do_reset=False, files=True)
    if result.mode == flash.ROMFS_FILE:
        assert back.removed == ["romfs.img"]
        assert "romfs.img" not in board_files(board)
    board.remove("hwa.mpy", "manifest.json", "romfs.img")


def test_config_keeps_other_keys_and_the_device_id(board: Board, tmp_path: Path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "hwc.py").write_text("C = 1\n")
    old = {"device": "hwtest-keep", "wifi": {"ssid": "lab", "key": "secret"}, "batch_s": 30}
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(old))
    board.mpremote("fs", "cp", str(cfg), ":config.json")
    result = board.deploy(firmware=fw, gateway=("10.1.2.3", 5684), do_reset=False)
    assert result.device == "hwtest-keep"
    new = json.loads(board.mpremote("fs", "cat", ":config.json"))
    assert new == {**old, "gateway": {"host": "10.1.2.3", "port": 5684}}
    board.remove("hwc.mpy", "manifest.json", "romfs.img")


def test_bad_input_is_refused_before_anything_is_copied(board: Board, tmp_path: Path):
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "hwd.py").write_text("D = 1\n")
    before = board_files(board)
    with pytest.raises(flash.FlashError, match=r"device id 'no\.dots'"):
        board.deploy(firmware=fw, device="no.dots", do_reset=False)
    (fw / "hwe.py").write_text("def broken(:\n")
    with pytest.raises(flash.FlashError, match=r"mpy-cross failed:\n  hwe.py:"):
        board.deploy(firmware=fw, device="hwtest-6", do_reset=False)
    assert board_files(board) == before


def test_a_config_the_firmware_would_refuse_is_refused_before_anything_is_written(
    board: Board, tmp_path: Path
):
    """The board would fall back to its last good config (or the defaults: another id,
    another gateway) and say so only on its console; the host says it at once."""
    fw = tmp_path / "fw"
    fw.mkdir()
    for name in ("config.py", "sensor.py"):  # the firmware's validator and its sources
        shutil.copy(flash.FIRMWARE / name, fw / name)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"device": "hwtest-bad", "health_s": 2}))
    board.mpremote("fs", "cp", str(cfg), ":config.json")
    before = board_files(board)
    with pytest.raises(flash.FlashError, match=r"config.json: health_s: must be an integer"):
        board.deploy(firmware=fw, do_reset=False)
    assert board_files(board) == before
    assert json.loads(board.mpremote("fs", "cat", ":config.json"))["health_s"] == 2
    board.remove("config.json")


def test_the_command_line_flashes_with_progress(board: Board, tmp_path: Path):
    fw = tmp_path / "fw"
    fw.mkdir()
    for name in ("hwf.py", "hwg.py"):
        (fw / name).write_text("F = 1\n")
    args = ["--firmware", str(fw), "--device-id", "hwtest-7", "--no-reset"]
    out = ringtail("device", "flash", board.port, *args, "--files")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    progress = [line.split(" (")[0] for line in lines if line.startswith("  [")]
    assert progress == [
        "  [1/4] hwf.mpy",
        "  [2/4] hwg.mpy",
        "  [3/4] config.json",
        "  [4/4] manifest.json",
    ]
    assert "verified 4 files on the board (sha256)" in lines
    # without --files: the image, where the board can take one
    out = ringtail("device", "flash", board.port, *args)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    progress = [line.split(" (")[0] for line in lines if line.startswith("  [")]
    if any(line.startswith("deploy: the modules as a ROMFS image") for line in lines):
        first = "romfs.img" if board.kind == "virtual" else "ROMFS0 partition: the ROMFS image"
        assert progress == [f"  [1/3] {first}", "  [2/3] config.json", "  [3/3] manifest.json"]
        assert "removing hwf.mpy, hwg.mpy" in lines
    board.remove("hwf.mpy", "hwg.mpy", "manifest.json", "romfs.img")


def test_an_unreachable_port_is_a_clear_error(tmp_path: Path):
    out = ringtail("device", "flash", str(tmp_path / "no-such-port"), "--device-id", "x")
    assert out.returncode == 1
    assert "failed to access" in out.stderr


def ringtail(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ringtail", path=str(Path(sys.executable).parent))
    assert exe, "the ringtail console script is not installed in this environment"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.needs("unique-id")
def test_the_default_device_id_is_the_chips_unique_id(board: Board):
    uid = board.exec(
        "import machine, binascii; print(binascii.hexlify(machine.unique_id()).decode())"
    )
    assert flash.probe(board.port).default_device == f"ringtail-{uid}"


def test_mpremote_errors_name_the_command(board: Board):
    with pytest.raises(MpremoteError, match=r"mpremote connect \S+ resume exec"):
        board.exec("import no_such_module_here")
