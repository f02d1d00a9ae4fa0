"""Polyflow's version: the one place it is written (``pyproject.toml`` reads it from here).

A constant rather than ``importlib.metadata.version()``: that module alone costs the daemon
about 20 ms at start, which every first command of a session waits for."""

__version__ = "0.1.0"
