"""Errors of the model format layer; training and serving translate them into their own trees."""

from __future__ import annotations


class DataError(ValueError):
    """Data that a feature pipeline cannot be fitted on; the message says what to change."""
