"""User and item feature tables for Wide & Deep, encoded as dense per-id matrices.

A table has an id column plus features: text and low-cardinality numbers become one-hot
columns (top values + 'other'), '|'-joined text becomes multi-hot (genres), other numbers are
standardised. Categorical columns come first, so the wide part can cross user and item
categories. Rows follow the model's id vocabulary; ids without a row get zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from training.errors import UserError
from training.propensity.data import Vocab

MAX_VALUES = 50


@dataclass
class Encoded:
    matrix: np.ndarray
    n_categorical: int
    names: list[str]


def encode(table: pd.DataFrame | None, id_column: str, vocab: Vocab, what: str) -> Encoded:
    if table is None:
        return Encoded(np.zeros((len(vocab), 0), dtype=np.float32), 0, [])
    table = table.set_axis([str(c) for c in table.columns], axis=1)
    if id_column not in table.columns:
        id_column = table.columns[0]
    rows = vocab.encode(table[id_column])
    keep = rows >= 0
    if not keep.any():
        raise UserError(f"The {what} feature table shares no ids with the interactions")
    table, rows = table[keep].reset_index(drop=True), rows[keep]
    cats: list[np.ndarray] = []
    nums: list[np.ndarray] = []
    names_c: list[str] = []
    names_n: list[str] = []
    for column in table.columns:
        if column == id_column:
            continue
        series = table[column]
        text = series.astype(str)
        if not pd.api.types.is_numeric_dtype(series) and text.str.contains("|", regex=False).any():
            tokens = text.str.split("|").explode()
            top = tokens.value_counts().index[:MAX_VALUES]
            block = np.zeros((len(vocab), len(top)), dtype=np.float32)
            col_idx = pd.Index(top).get_indexer(tokens.to_numpy())
            row_idx = rows[tokens.index.to_numpy()]
            ok = col_idx >= 0
            block[row_idx[ok], col_idx[ok]] = 1.0
            cats.append(block)
            names_c += [f"{column}={t}" for t in top]
        elif pd.api.types.is_numeric_dtype(series) and series.nunique() > 20:
            values = series.to_numpy(dtype=np.float64)
            mean, std = np.nanmean(values), np.nanstd(values) or 1.0
            block = np.zeros((len(vocab), 1), dtype=np.float32)
            block[rows, 0] = np.nan_to_num((values - mean) / std)
            nums.append(block)
            names_n.append(column)
        else:
            top = text.value_counts().index[:MAX_VALUES]
            block = np.zeros((len(vocab), len(top) + 1), dtype=np.float32)
            idx = pd.Index(top).get_indexer(text.to_numpy())
            block[rows, np.where(idx < 0, len(top), idx)] = 1.0
            cats.append(block)
            names_c += [f"{column}={t}" for t in top] + [f"{column}=other"]
    blocks = cats + nums
    matrix = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(vocab), 0), np.float32)
    return Encoded(matrix.astype(np.float32), sum(b.shape[1] for b in cats), names_c + names_n)


def summary(enc: Encoded) -> dict[str, Any]:
    return {"columns": len(enc.names), "categorical": enc.n_categorical}
