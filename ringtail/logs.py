"""Logging for the services' command lines: one `--log-level` option, one line format."""

from __future__ import annotations

import argparse
import logging
import re
import sys

LEVELS = ("debug", "info", "warning", "error")


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="info",
        choices=LEVELS,
        help="least severe messages to print (default: info)",
    )


def setup_logging(level: str) -> None:
    """Timestamped lines on standard error, where systemd's journal and docker logs read."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def redact_url(url: str) -> str:
    """The URL with any user:password@ replaced: URLs go into logs and error messages."""
    return re.sub(r"//[^@/]*@", "//***@", url)
