"""User-facing errors: each names the field, file or row at fault, and maps to exit code 2 in the CLIs."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (a usage or data error). CLIs print its message alone and exit 2."""

    exit_code = 2


class ConfigError(UserError):
    """A config key or value is invalid; the message names the dotted field."""


class DataError(UserError):
    """A manifest, audio file or split cannot be used; the message names the file/row/column."""
