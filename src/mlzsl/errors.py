"""Typed errors. Every error a user can cause is an :class:`MlzslError`.

The CLI turns any ``MlzslError`` into one line on stderr and exit status 2, never a traceback.
Messages name the file, the field and what was expected.
"""

from __future__ import annotations


class MlzslError(Exception):
    """Base class of every error caused by user input (files, labels, configs, arguments)."""


class DataError(MlzslError):
    """A data file or folder is missing, unreadable or malformed."""


class LabelError(MlzslError):
    """A label cannot be used: unknown word for an embedder, empty list, duplicate, ..."""


class ConfigError(MlzslError):
    """A configuration or argument value is malformed or of the wrong type."""
