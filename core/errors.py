"""The exceptions the core raises, one family, each saying what to do next."""

from __future__ import annotations

from sensor.errors import ConfigError


class CoreError(Exception):
    """Base of every error a person may have to act on."""


class CoreConfigError(CoreError, ConfigError):
    """The core's YAML configuration is unreadable or invalid; names the file, line and key."""


class StoreError(CoreError):
    """The core's database cannot be opened or written."""
