"""Raw user and item ids <-> dense indices, as `train` saves them (users.json, items.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Vocab:
    """Raw id (as a string) <-> dense index."""

    ids: list[str]

    def __post_init__(self) -> None:
        self._lookup = {v: n for n, v in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def fit(cls, values: pd.Series) -> Vocab:
        return cls(list(pd.unique(as_str(values))))

    @classmethod
    def read(cls, path: Path) -> Vocab:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def encode(self, values: Any) -> np.ndarray:
        """Indices, -1 for unknown ids (a dict lookup per id: 10x pandas' indexer on requests)."""
        seq = values.tolist() if hasattr(values, "tolist") else list(values)
        get = self._lookup.get
        return np.fromiter((get(v if type(v) is str else id_str(v), -1) for v in seq),
                           dtype=np.int64, count=len(seq))


def id_str(value: Any) -> str:
    """An id as text: 7.0 (a CSV column pandas read as floats) and 7 are the same id."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def as_str(values: pd.Series) -> np.ndarray:
    """Ids as strings; integral floats (CSV and JSON quirks) lose their '.0'."""
    if pd.api.types.is_integer_dtype(values) or (pd.api.types.is_string_dtype(values) and not (
        values.map(lambda v: isinstance(v, float)).any()
    )):
        return values.astype(str).to_numpy(dtype=object)
    return values.map(id_str).to_numpy(dtype=object)
