"""Interactions -> id vocabularies, a validation split, negative samples, seen-item sets.

Ids are arbitrary strings or integers; vocabularies map them to dense indices in `train` and
are saved with the model. Everything is vectorised with numpy: ml-1m's million interactions
are resampled every epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelformat.propensity.vocab import Vocab
from training.errors import UserError


def reindex(vocab: Vocab, keep: np.ndarray) -> tuple[Vocab, np.ndarray]:
    """The vocabulary of the kept indices (same order) and a map old index -> new index.

    Dropped indices map to -1, and so does -1 itself (the map has one extra slot at the end,
    which index -1 reads), so already-unknown ids stay unknown.
    """
    kept = np.flatnonzero(keep)
    mapping = np.full(len(vocab) + 1, -1, dtype=np.int64)
    mapping[kept] = np.arange(kept.size)
    return Vocab([vocab.ids[j] for j in kept.tolist()]), mapping


@dataclass
class Interactions:
    users: np.ndarray  # int64 indices
    items: np.ndarray
    timestamps: np.ndarray | None

    def __len__(self) -> int:
        return int(self.users.size)


def pick_column(frame: pd.DataFrame, wanted: str, fallbacks: tuple[str, ...], position: int | None,
                what: str, channel: str) -> str:
    columns = [str(c) for c in frame.columns]
    if wanted:
        if wanted in columns:
            return wanted
        raise UserError(f"{what} column '{wanted}' not found in channel '{channel}'; columns are: "
                        f"{', '.join(columns[:20])}")
    for name in fallbacks:
        if name in columns:
            return name
    if position is not None and position < len(columns) and columns[position].isdigit():
        return columns[position]
    raise UserError(f"Channel '{channel}' has no {what} column (looked for {', '.join(fallbacks)}); "
                    f"set the hyperparameter {what.lower()}_column")


USER_NAMES = ("user", "user_id", "userId", "UserID", "customer_id")
ITEM_NAMES = ("item", "item_id", "itemId", "movie_id", "movieId", "MovieID", "product_id", "merchant_id")
TIME_NAMES = ("timestamp", "ts", "time", "event_time")
LABEL_NAMES = ("label", "rating", "weight", "clicked", "purchased")


def positives(frame: pd.DataFrame, params: dict[str, Any], channel: str
              ) -> tuple[pd.Series, pd.Series, pd.Series | None]:
    """(user ids, item ids, timestamps) of the positive interactions in a channel."""
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    ucol = pick_column(frame, params["user_column"], USER_NAMES, 0, "User", channel)
    icol = pick_column(frame, params["item_column"], ITEM_NAMES, 1, "Item", channel)
    label_col = params["label_column"] or next((c for c in LABEL_NAMES if c in frame.columns), "")
    if label_col:
        if label_col not in frame.columns:
            raise UserError(f"Label column '{label_col}' not found in channel '{channel}'")
        label = pd.to_numeric(frame[label_col], errors="coerce")
        if label.isna().any():
            raise UserError(f"Label column '{label_col}' in channel '{channel}' must be numeric")
        frame = frame[label > 0]
    tcol = params["timestamp_column"] or next((c for c in TIME_NAMES if c in frame.columns), "")
    ts = None
    if tcol:
        if tcol not in frame.columns:
            raise UserError(f"Timestamp column '{tcol}' not found in channel '{channel}'")
        raw = frame[tcol]
        ts = pd.to_numeric(raw, errors="coerce")
        if ts.isna().all():
            ts = pd.to_datetime(raw, errors="coerce", format="mixed").astype("int64") // 10**9
    if frame[ucol].isna().any() or frame[icol].isna().any():
        raise UserError(f"Channel '{channel}' has rows with an empty user or item id")
    if frame.empty:
        raise UserError(f"Channel '{channel}' has no positive interactions (label > 0)")
    return frame[ucol], frame[icol], ts


def leave_one_out(data: Interactions) -> tuple[Interactions, np.ndarray, np.ndarray]:
    """Each user's latest interaction (by timestamp, else the last row) held out.

    Users with a single interaction keep it for training. Returns (train, val users, val items).
    """
    n = len(data)
    order_key = data.timestamps if data.timestamps is not None else np.arange(n)
    order = np.lexsort((np.arange(n), order_key, data.users))
    users_sorted = data.users[order]
    last = np.ones(n, dtype=bool)
    last[:-1] = users_sorted[1:] != users_sorted[:-1]
    counts = np.bincount(data.users)
    held = order[last & (counts[users_sorted] > 1)]
    keep = np.ones(n, dtype=bool)
    keep[held] = False
    ts = data.timestamps[keep] if data.timestamps is not None else None
    return Interactions(data.users[keep], data.items[keep], ts), data.users[held], data.items[held]


def time_split(data: Interactions, fraction: float) -> tuple[Interactions, np.ndarray, np.ndarray]:
    if data.timestamps is None:
        raise UserError("validation=time needs a timestamp column")
    cut = np.quantile(data.timestamps, 1 - fraction)
    late = data.timestamps > cut
    return (Interactions(data.users[~late], data.items[~late], data.timestamps[~late]),
            data.users[late], data.items[late])


class SeenItems:
    """Per-user sets of interacted items as sorted keys, for membership tests and exclusion."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> None:
        self.n_items = n_items
        keys = np.unique(users.astype(np.int64) * n_items + items.astype(np.int64))
        self.keys = keys
        u = keys // n_items
        self.indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.add.at(self.indptr, u + 1, 1)
        self.indptr = np.cumsum(self.indptr)
        self.indices = (keys % n_items).astype(np.int32)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        q = users.astype(np.int64) * self.n_items + items.astype(np.int64)
        pos = np.searchsorted(self.keys, q)
        pos = np.minimum(pos, self.keys.size - 1)
        return np.asarray(self.keys[pos] == q)

    def of(self, user: int) -> np.ndarray:
        return self.indices[self.indptr[user]:self.indptr[user + 1]]

    def save(self, path: Path) -> None:
        np.savez_compressed(path, indptr=self.indptr, indices=self.indices,
                            n_items=np.array([self.n_items]))


def sample_negatives(users: np.ndarray, per_user: int, seen: SeenItems, rng: np.random.Generator,
                     n_items: int, avoid: np.ndarray | None = None) -> np.ndarray:
    """``per_user`` uniformly drawn items per entry of ``users`` that the user never touched.

    Rejection sampling, vectorised; ``avoid`` (one item per user) is excluded as well.
    """
    out = rng.integers(0, n_items, size=(users.size, per_user))
    rep = np.repeat(users, per_user)
    for _ in range(100):
        flat = out.reshape(-1)
        bad = seen.contains(rep, flat)
        if avoid is not None:
            bad |= flat == np.repeat(avoid, per_user)
        if not bad.any():
            break
        flat[bad] = rng.integers(0, n_items, size=int(bad.sum()))
    return out


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
