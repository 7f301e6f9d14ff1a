"""Activates hwtests/plugin.py: this directory is in pytest's testpaths, so its conftest is
loaded at start-up, where `--board` and the other options must be registered."""

from hwtests.plugin import (
    _serial_board,
    board,
    board_option,
    firmware,
    gateway,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
)

__all__ = [
    "_serial_board",
    "board",
    "board_option",
    "firmware",
    "gateway",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_runtest_makereport",
]
