"""Debian packages a test needs, installed by the test itself when missing (CI runs as root
on a fresh Debian); otherwise the test is skipped with what is missing and why.

RINGTAIL_NO_APT=1 forbids installing."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _apt_install(packages: tuple[str, ...]) -> str | None:
    """None on success, else why not."""
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    cmd += ["-o", "DPkg::Lock::Timeout=120", *packages]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=900)
    if proc.returncode:  # a fresh image has no package lists yet
        subprocess.run(
            ["apt-get", "update", "-q"], capture_output=True, env=env, check=False, timeout=600
        )
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, check=False, timeout=900
        )
    return f"apt-get install failed: {proc.stderr.strip()[-300:]}" if proc.returncode else None


def require_tools(tools: tuple[str, ...], packages: tuple[str, ...]) -> dict[str, str]:
    """The path of each of `tools`, installing `packages` first if one is missing; skips the
    calling test, saying why, when they cannot be had."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        what = f"{' and '.join(missing)} not installed (Debian: {' '.join(packages)})"
        if os.environ.get("RINGTAIL_NO_APT") == "1":
            pytest.skip(f"{what}; RINGTAIL_NO_APT=1 forbids installing them")
        if shutil.which("apt-get") is None:
            pytest.skip(f"{what}, and there is no apt-get to install them")
        if os.geteuid() != 0:
            pytest.skip(f"{what}; installing them with apt-get needs root")
        failure = _apt_install(packages)
        if failure:
            pytest.skip(f"{what}; {failure}")
    paths = {t: shutil.which(t) for t in tools}
    gone = [t for t, p in paths.items() if p is None]
    assert not gone, f"apt-get installed {packages} but {gone} is still missing"
    return {t: p for t, p in paths.items() if p is not None}
