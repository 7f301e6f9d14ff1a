"""The `ringtail` command as a user runs it: installed on PATH, in a subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ringtail

VECTORS = Path(__file__).resolve().parent.parent / "protocol" / "vectors"


def ringtail_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("ringtail", path=str(Path(sys.executable).parent))
    assert exe, "the ringtail console script is not installed in this environment"
    return subprocess.run([exe, *args], input=stdin, capture_output=True, timeout=60)


def test_help_names_the_commands():
    out = ringtail_cli("--help")
    assert out.returncode == 0
    text = out.stdout.decode()
    assert "usage: ringtail" in text
    assert "protocol" in text


def test_version():
    out = ringtail_cli("--version")
    assert out.returncode == 0
    assert out.stdout.decode().strip() == f"ringtail {ringtail.__version__}"


def test_no_command_prints_help_and_fails():
    out = ringtail_cli()
    assert out.returncode == 2
    assert "usage: ringtail" in out.stdout.decode()


def test_unknown_command_is_an_error():
    out = ringtail_cli("launch-rockets")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr.decode()


def test_check_accepts_a_valid_batch():
    out = ringtail_cli("protocol", "check", str(VECTORS / "valid" / "two-series.cbor"))
    assert out.returncode == 0
    assert "2.04 valid: 6 readings in 2 series, seq 1000..1005" in out.stdout.decode()


def test_check_reports_each_refusal_and_fails():
    good = VECTORS / "valid" / "minimal.cbor"
    bad = VECTORS / "invalid" / "ts-decreasing.cbor"
    out = ringtail_cli("protocol", "check", str(good), str(bad))
    assert out.returncode == 1
    lines = out.stdout.decode().splitlines()
    assert lines[0].endswith(
        "2.04 valid: 1 readings in 1 series, seq 1000..1000 (device sht31-kitchen, boot 7)"
    )
    assert lines[1] == f"{bad}: 4.22: time offset 3 is decreasing at series[0].ts[2]"


def test_check_reads_stdin():
    data = (VECTORS / "invalid" / "nesting-16000.cbor").read_bytes()
    out = ringtail_cli("protocol", "check", "-", stdin=data)
    assert out.returncode == 1
    assert out.stdout.decode().startswith("-: 4.00: nesting deeper than 8 levels")


def test_check_health_report():
    out = ringtail_cli(
        "protocol", "check", "--health", str(VECTORS / "invalid" / "health-unknown-reset.cbor")
    )
    assert out.returncode == 1
    assert "4.22: unknown boot reason 9 at reset" in out.stdout.decode()


def test_check_missing_file_says_so():
    out = ringtail_cli("protocol", "check", "/nonexistent/batch.cbor")
    assert out.returncode == 1
    assert "cannot read: No such file or directory" in out.stderr.decode()


@pytest.mark.parametrize("args", [("protocol",), ("protocol", "check")])
def test_incomplete_commands_explain_usage(args):
    out = ringtail_cli(*args)
    assert out.returncode == 2
    assert "usage: ringtail protocol" in out.stderr.decode()


def test_schema_prints_the_cddl():
    out = ringtail_cli("protocol", "schema")
    assert out.returncode == 0
    assert out.stdout.decode() == (
        Path(ringtail.__file__).parent.parent / "protocol" / "telemetry.cddl"
    ).read_text(encoding="utf-8")


def test_stack_refuses_board_settings_the_firmware_would_refuse(tmp_path: Path):
    """Before anything starts: no state directory, no process."""
    var = tmp_path / "var"
    out = ringtail_cli("stack", "--batch-s", "0", "--var", str(var), "--duration", "1")
    assert out.returncode != 0
    assert "batch_s: must be an integer 1..1800, got 0" in out.stderr.decode()
    assert not var.exists()


def test_a_box_without_an_extra_says_what_to_install():
    """A gateway box has no cloud extra: `ringtail --help` still works and says so."""
    code = (
        "import sys; sys.modules['cloud.cli'] = None\n"
        "from ringtail.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    text = " ".join(out.stdout.decode().split())
    assert "cloud unavailable: cloud.cli is not installed (pip install 'ringtail[cloud]')" in text
    assert "audit unavailable" in text and "gateway the CoAP gateway" in text
