"""Reading plain values out of user text and data, the same way in training and in serving."""

from __future__ import annotations

from typing import Any

import numpy as np

TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off"})


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def boolean(value: Any) -> bool | None:
    """True or False for a bool or a yes/no word; None when the value says neither."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in TRUE else False if text in FALSE else None


def plain(value: Any) -> Any:
    """NumPy scalars as Python values, and whole floats as ints (ids and labels read as 1.0)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


EXACT_INT = 2**53  # beyond this a JSON number loses digits in JavaScript and in every float64 reader


def identifier(value: Any) -> Any:
    """An id as answers carry it: ``plain``, and an integer a float64 cannot hold exactly as its
    decimal string (CSV and JSON inputs give the same answer for a 19-digit device id)."""
    value = plain(value)
    if type(value) is int and not -EXACT_INT <= value <= EXACT_INT:
        return str(value)
    return value
