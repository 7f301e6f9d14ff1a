"""Fixtures for the native/ tests."""

from __future__ import annotations

import pytest
from native_series import load_reference


@pytest.fixture(scope="session")
def tscodec():
    """firmware/tscodec.py, imported from its path (firmware/ is not a package)."""
    return load_reference()
