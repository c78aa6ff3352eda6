"""Vocabularies, the training split and validation cases, with no case dropped.

The model knows what training saw: users and items with an interaction in the training split,
plus the catalog (the ids of an ``items`` channel), so training negatives and the ranking cover
the whole catalog, not only items that happen to occur in ``train``. Each held-out positive is
a case whatever its ids: a user, positive or negative outside the vocabularies is -1 and
scores by the serving cold-start rule (``modelformat.propensity.scoring.scores_with_cold_start``),
as `serve` would score it. Metrics cover every case; ``warm_<metric>`` covers the warm ones (user and every
candidate with a training interaction), and the counts say how many cases and candidates
were cold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelformat.propensity.scoring import COLD_START_RULE, Weights, scorer_for, scores_with_cold_start
from training.errors import UserError
from training.propensity import data as pdata
from training.propensity import ranking
from training.propensity.data import Interactions, SeenItems, Vocab

WARM_RULE = "warm case: its user and every candidate (positive and negatives) have a training interaction"


@dataclass(frozen=True)
class ValidationChannel:
    """Held-out positives read from the ``validation`` channel, optionally with given negatives."""

    users: pd.Series
    items: pd.Series
    negatives: list[list[Any]] | None = None


@dataclass(frozen=True)
class Cases:
    """Each held-out positive (column 0 of ``candidates``) among its negatives; -1 = not in the model."""

    users: np.ndarray
    candidates: np.ndarray
    warm: np.ndarray  # per case: user and every candidate have a training interaction
    repeats: np.ndarray | None  # per negative: it is the positive item itself (not a competitor)
    counts: dict[str, int]


@dataclass(frozen=True)
class Split:
    """The model's vocabularies, its training interactions and the validation cases."""

    users: Vocab
    items: Vocab
    history: Interactions  # every interaction inside the vocabularies (seen items at serving)
    train: Interactions
    cases: Cases | None
    source: str
    interactions: int  # positive interactions read, before the split


def split(mode: str, u_raw: pd.Series, i_raw: pd.Series, ts: pd.Series | None, catalog: pd.Series | None,
          channel: ValidationChannel | None, *, negatives: int, fraction: float, seed: int) -> Split:
    """Vocabularies, training interactions and validation cases for a resolved validation mode."""
    items_raw = i_raw if catalog is None else pd.concat([i_raw, catalog], ignore_index=True)
    users0, items0 = Vocab.fit(u_raw), Vocab.fit(items_raw)
    inter0 = Interactions(users0.encode(u_raw), items0.encode(i_raw),
                          None if ts is None else ts.to_numpy(dtype=np.int64))
    in_catalog = np.zeros(len(items0), dtype=bool)
    if catalog is not None:
        in_catalog[items0.encode(catalog)] = True
    held: tuple[np.ndarray, np.ndarray] | None = None  # (users, items) held out of inter0
    if mode == "channel":
        if channel is None:
            raise UserError("validation=channel but the job has no 'validation' channel")
        train0, source = inter0, "validation channel"
    elif mode == "leave_one_out":
        train0, vu0, vi0 = pdata.leave_one_out(inter0)
        held, source = (vu0, vi0), "leave-one-out (latest interaction per user)"
    elif mode == "time":
        train0, vu0, vi0 = pdata.time_split(inter0, fraction)
        held, source = (vu0, vi0), f"time split (latest {fraction:.0%})"
    else:
        train0, source = inter0, "none"
    # What training saw, plus the catalog: held-out-only ids stay outside, as they would at serving.
    users, umap = pdata.reindex(users0, np.bincount(train0.users, minlength=len(users0)) > 0)
    items, imap = pdata.reindex(items0, (np.bincount(train0.items, minlength=len(items0)) > 0) | in_catalog)
    train = Interactions(umap[train0.users], imap[train0.items], train0.timestamps)
    hu, hi = umap[inter0.users], imap[inter0.items]
    inside = (hu >= 0) & (hi >= 0)
    history = Interactions(hu[inside], hi[inside], None)
    if len(items) < 2:
        raise UserError("The training interactions name fewer than 2 distinct items; nothing to rank")
    rng = np.random.default_rng([seed, 99])
    repeats = None
    if channel is not None and mode == "channel":
        vu, vi = users.encode(channel.users), items.encode(channel.items)
        if channel.negatives is not None:
            negs, repeats = _given_negatives(channel, items)
        else:
            seen = SeenItems(history.users, history.items, len(users), len(items))
            negs = pdata.sample_negatives(vu, negatives, seen, rng, len(items), avoid=vi)
    elif held is not None:
        vu0, vi0 = held
        vu, vi = umap[vu0], imap[vi0]
        # Sampled among the model's items, avoiding everything the user touched (held-out included);
        # keyed by the full user index, so a user outside the vocabulary still avoids their own items.
        seen0 = SeenItems(inter0.users[hi >= 0], hi[hi >= 0], len(users0), len(items))
        negs = pdata.sample_negatives(vu0, negatives, seen0, rng, len(items), avoid=vi)
    else:
        return Split(users, items, history, train, None, source, len(inter0))
    candidates = np.concatenate([vi[:, None], negs], axis=1)
    trained = np.bincount(train.items, minlength=len(items)) > 0
    return Split(users, items, history, train, describe(vu, candidates, trained, repeats), source,
                 len(inter0))


def _given_negatives(channel: ValidationChannel, items: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """The channel's negatives as item indices (-1 = unknown), and which of them repeat the positive."""
    assert channel.negatives is not None
    lengths = {len(lst) for lst in channel.negatives}
    if len(lengths) != 1:
        raise UserError("validation 'negatives' lists must all have the same length")
    flat = pd.Series([x for lst in channel.negatives for x in lst], dtype=object)
    shape = (len(channel.negatives), lengths.pop())
    negs = items.encode(flat).reshape(shape)
    # Compared as ids, not indices: two unknown ids are both -1 but need not be the same item.
    local = Vocab.fit(pd.concat([pd.Series(channel.items.tolist(), dtype=object), flat], ignore_index=True))
    repeats = local.encode(flat).reshape(shape) == local.encode(channel.items)[:, None]
    return negs, repeats


def describe(users: np.ndarray, candidates: np.ndarray, trained: np.ndarray,
             repeats: np.ndarray | None = None) -> Cases:
    """Cases with their warm flags and cold counts; ``trained[i]``: item i has a training interaction."""
    # One extra False slot, read by index -1: an item outside the vocabulary is cold.
    cold = ~np.append(trained, False)[candidates]
    cold_user = users < 0
    warm = ~cold_user & ~cold.any(axis=1)
    counts = {
        "cases": int(users.size), "warm_cases": int(warm.sum()), "cold_cases": int((~warm).sum()),
        "cold_user_cases": int(cold_user.sum()), "cold_positive_cases": int(cold[:, 0].sum()),
        "cold_negative_cases": int(cold[:, 1:].any(axis=1).sum()),
        "candidates": int(candidates.size), "cold_candidates": int(cold.sum()),
        "unknown_candidates": int((candidates < 0).sum()),
        "negatives_repeating_positive": 0 if repeats is None else int(repeats.sum()),
    }
    return Cases(users, candidates, warm, repeats if repeats is not None and repeats.any() else None, counts)


def summary(cases: Cases) -> str:
    c = cases.counts
    return (f"{c['cases']} cases, all evaluated: {c['cold_cases']} cold ({c['cold_user_cases']} with a "
            f"user unseen in training, scored by item popularity; {c['cold_positive_cases']} with a cold "
            f"positive; {c['cold_negative_cases']} with cold negatives); {c['cold_candidates']} of "
            f"{c['candidates']} candidates cold, {c['unknown_candidates']} of them outside the vocabulary "
            "(score 0)")


def report(cases: Cases) -> dict[str, Any]:
    """What evaluation.json says about the cases: counts and the rules they were scored by."""
    return {**cases.counts, "tie_rule": ranking.TIE_RULE, "cold_start": COLD_START_RULE,
            "warm": WARM_RULE}


def metric_counts(cases: Cases) -> dict[str, float]:
    """The counts printed on the final metric line."""
    return {f"validation:{name}": float(cases.counts[name])
            for name in ("cases", "cold_cases", "cold_candidates")}


def evaluator(arch: dict[str, Any], cases: Cases, k: int, popularity: np.ndarray
              ) -> Callable[[Weights], dict[str, float]]:
    """Scores every case's candidates as `serve` would, cold ones by the cold-start rule."""
    users = np.repeat(cases.users, cases.candidates.shape[1])
    items = cases.candidates.reshape(-1)

    def run(weights: Weights) -> dict[str, float]:
        s = scores_with_cold_start(scorer_for(arch, {**weights, "popularity": popularity}), users, items)
        return ranking.evaluate(s.reshape(cases.candidates.shape), k, cases.warm, cases.repeats)

    return run
