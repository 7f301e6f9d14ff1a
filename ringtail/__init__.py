"""Ringtail: IoT telemetry from MicroPython sensor boards to ClickHouse, exactly once."""

__version__ = "0.1.0"
