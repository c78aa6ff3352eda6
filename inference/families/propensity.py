"""Serving the propensity models with NumPy: score (user, item) pairs, or top-K items per user.

Requests are records. With an ``item`` field each record is a pair to score; without one,
each record asks for the top ``k`` items of ``user`` (optional ``candidates`` restricts the
choice, ``exclude_seen`` (default true) drops items the user interacted with in training).
Unknown users fall back to item popularity and unknown items score 0; both are flagged
``cold_start`` and never raise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from container.values import boolean, identifier
from inference.codecs import Inputs, Outputs
from inference.errors import BadInput
from inference.predictors import ModelFiles, OutputSpec
from modelformat import scorers
from modelformat.propensity.scoring import PairScorer, legacy_scorer, scores_with_cold_start
from modelformat.propensity.vocab import Vocab

USER_KEYS = ("user", "user_id", "userId")
ITEM_KEYS = ("item", "item_id", "itemId")
MAX_K = 10_000


def _column(table: pd.DataFrame, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in table.columns), None)


def _bool(value: Any, default: bool) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return default
    parsed = boolean(value)
    if parsed is None:
        raise BadInput(f"exclude_seen must be true or false, got {value!r}")
    return parsed


def _id_list(value: Any) -> list[Any] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    if isinstance(value, str):
        return [v for v in value.replace("|", " ").split() if v]
    raise BadInput("candidates must be a list of item ids (or a '|'-joined string)")


def describe(manifest: dict[str, Any]) -> OutputSpec:
    # Pair scores are compared across versions; top-K answers have no single score.
    return OutputSpec(label_column=None, score_column="score", truth_columns=("truth", "label", "target"))


class Predictor(ModelFiles):
    def __init__(self, model_dir: Path, manifest: dict[str, Any], threads: int = 1,
                 name: str | None = None) -> None:
        super().__init__(model_dir, manifest, name, describe(manifest))
        self.scorer: PairScorer = scorers.load(model_dir, manifest, threads, legacy_scorer)
        self.popularity = self.scorer.popularity
        self.users = Vocab.read(model_dir / "users.json")
        self.items = Vocab.read(model_dir / "items.json")
        with np.load(model_dir / "seen.npz") as seen:
            self.seen_indptr, self.seen_indices = seen["indptr"], seen["indices"]
        self.default_k = int(manifest.get("top_k", 10))
        self.all_items = np.arange(len(self.items), dtype=np.int64)

    # --- pure scoring on indices ---------------------------------------------------
    def score_indices(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Scores for index pairs; -1 marks unknown ids (the cold-start rule training evaluates)."""
        return scores_with_cold_start(self.scorer, u, i)

    def top_k(self, u: int, k: int, candidates: np.ndarray | None, exclude_seen: bool
              ) -> tuple[np.ndarray, np.ndarray]:
        items = self.all_items if candidates is None else candidates
        if u >= 0 and exclude_seen:
            seen = self.seen_indices[self.seen_indptr[u]:self.seen_indptr[u + 1]]
            items = items[~np.isin(items, seen)] if seen.size else items
        if items.size == 0:
            return items, np.empty(0)
        if u >= 0:
            s = self.scorer.scores(np.full(items.size, u, dtype=np.int64), items)
        else:
            s = self.popularity[items]
        k = min(k, items.size)
        part = np.argpartition(-s, k - 1)[:k] if k < items.size else np.arange(items.size)
        order = part[np.lexsort((items[part], -s[part]))]
        return items[order], s[order]

    # --- requests ----------------------------------------------------------------------
    def _table(self, inputs: Inputs) -> pd.DataFrame:
        if inputs.table is not None:
            return inputs.table.set_axis([str(c) for c in inputs.table.columns], axis=1)
        assert inputs.matrix is not None
        if inputs.matrix.shape[1] == 2:
            return pd.DataFrame({"user": inputs.matrix[:, 0], "item": inputs.matrix[:, 1]})
        if inputs.matrix.shape[1] == 1:
            return pd.DataFrame({"user": inputs.matrix[:, 0]})
        raise BadInput("Propensity requests are records with 'user' and 'item' (pair scores) or 'user' "
                       "(top-K); headerless CSV rows must be 'user,item' or 'user'")

    def predict(self, inputs: Inputs) -> Outputs:
        table = self._table(inputs)
        ucol = _column(table, USER_KEYS)
        if ucol is None:
            raise BadInput("Each record needs a 'user' field (and 'item' to score a pair)")
        if table[ucol].isna().any():
            raise BadInput("Every record needs a non-empty 'user'")
        icol = _column(table, ITEM_KEYS)
        u = self.users.encode(table[ucol])
        users_out = _plain_all(table[ucol].tolist())
        if icol is not None:
            if table[icol].isna().any():
                raise BadInput("Every pair record needs a non-empty 'item'")
            i = self.items.encode(table[icol])
            s = self.score_indices(u, i)
            return Outputs(columns={
                "user": users_out, "item": _plain_all(table[icol].tolist()),
                "score": np.round(s, 6).tolist(), "cold_start": ((u < 0) | (i < 0)).tolist(),
            }, csv_columns=["user", "item", "score"])
        ks = table["k"].tolist() if "k" in table.columns else [None] * len(table)
        cands = table["candidates"].tolist() if "candidates" in table.columns else [None] * len(table)
        excl = table["exclude_seen"].tolist() if "exclude_seen" in table.columns else [None] * len(table)
        out_items, out_scores = [], []
        for n, (uu, k, cand, ex) in enumerate(zip(u.tolist(), ks, cands, excl, strict=True), start=1):
            kk = self.default_k if k is None or (isinstance(k, float) and np.isnan(k)) else k
            try:
                kk = int(kk)
            except (TypeError, ValueError):
                raise BadInput(f"Record {n}: k must be a whole number, got {k!r}") from None
            if not 1 <= kk <= MAX_K:
                raise BadInput(f"Record {n}: k must be between 1 and {MAX_K}")
            ids = _id_list(cand)
            cand_idx = None
            if ids is not None:
                enc = self.items.encode(pd.Series(ids))
                cand_idx = np.unique(enc[enc >= 0])
            items, scores = self.top_k(int(uu), kk, cand_idx, _bool(ex, True))
            out_items.append([self.items.ids[j] for j in items.tolist()])
            out_scores.append(np.round(scores, 6).tolist())
        return Outputs(columns={"user": users_out, "items": out_items, "scores": out_scores,
                                "cold_start": (u < 0).tolist()},
                       csv_columns=["user", "items", "scores"])

    def warmup(self) -> None:
        records = json.loads((self.model_dir / "warmup.json").read_text(encoding="utf-8"))
        for record in records:
            out = self.predict(Inputs(table=pd.DataFrame([record])))
            values = out.columns.get("score") or out.columns.get("scores")
            flat = np.asarray(values[0] if values and isinstance(values[0], list) else values, dtype=float)
            if not np.all(np.isfinite(flat)):
                raise RuntimeError("warm-up propensity scores are not finite")


def _plain_all(values: list[Any]) -> list[Any]:
    """Ids as given; strings (the usual case) pass through untouched."""
    if all(type(v) is str for v in values):
        return values
    return [identifier(v) for v in values]

