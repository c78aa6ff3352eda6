"""Ranking metrics against hand-computed cases; vocabularies, splits and negative sampling."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.propensity import data as pdata
from training.propensity import ranking


def test_hr_and_ndcg_by_hand() -> None:
    # positive first; ranks: 0 (best), 2 (two higher), 10 (ten higher), tie with one -> rank 0
    scores = np.array([
        [0.9, 0.1, 0.2] + [0.0] * 9,
        [0.5, 0.7, 0.6] + [0.0] * 9,
        [0.1] + [0.5] * 10 + [0.0],
        [0.4, 0.4] + [0.0] * 10,
    ])
    ranks = ranking.positive_ranks(scores)
    assert ranks.tolist() == [0, 2, 10, 0]
    assert ranking.hit_ratio(ranks, 10) == 0.75
    assert ranking.hit_ratio(ranks, 2) == 0.5
    expected = (1 / math.log2(2) + 1 / math.log2(4) + 0 + 1 / math.log2(2)) / 4
    assert ranking.ndcg(ranks, 10) == pytest.approx(expected)
    got = ranking.evaluate(scores, 10)
    assert got["hr@10"] == 0.75 and got["precision@10"] == pytest.approx(0.075)
    assert 0 <= got["roc_auc"] <= 1


def test_vocab_handles_strings_ints_and_integral_floats() -> None:
    vocab = pdata.Vocab.fit(pd.Series([10, 20, 10, 30]))
    assert vocab.ids == ["10", "20", "30"]
    assert vocab.encode([20.0, "30", 99]).tolist() == [1, 2, -1]


def test_leave_one_out_holds_out_the_latest_per_user() -> None:
    inter = pdata.Interactions(np.array([0, 0, 0, 1, 1, 2]), np.array([5, 6, 7, 5, 8, 9]),
                               np.array([3, 1, 2, 10, 20, 1]))
    train, vu, vi = pdata.leave_one_out(inter)
    assert sorted(zip(vu.tolist(), vi.tolist(), strict=True)) == [(0, 5), (1, 8)]
    assert len(train) == 4 and 2 in train.users.tolist()  # single-interaction user keeps it


def test_negatives_never_hit_seen_items_or_the_held_out_item() -> None:
    users = np.repeat(np.arange(50), 8)
    items = np.concatenate([np.random.default_rng(u).choice(30, 8, replace=False) for u in range(50)])
    seen = pdata.SeenItems(users, items, 50, 30)
    avoid = np.arange(50) % 30
    negs = pdata.sample_negatives(np.arange(50), 15, seen, np.random.default_rng(0), 30, avoid=avoid)
    assert negs.shape == (50, 15)
    rep = np.repeat(np.arange(50), 15)
    assert not seen.contains(rep, negs.ravel()).any()
    assert not (negs == avoid[:, None]).any()
    assert sorted(seen.of(3).tolist()) == sorted(set(items[users == 3].tolist()))
