"""Only the cffi extension lives here; pyproject.toml is the home of all other metadata."""

from setuptools import setup

setup(cffi_modules=["native/_build.py:ffibuilder"])
