"""Ranking metrics and ties against hand-computed cases; the cold-start rule; vocabularies, splits,
validation cases and negative sampling."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from modelformat.propensity import scoring
from training.propensity import data as pdata
from training.propensity import ranking, validation


def test_hr_and_ndcg_by_hand() -> None:
    # positive first; ranks: 0 (best), 2 (two higher), 10 (ten higher), tie with one -> rank 1
    scores = np.array([
        [0.9, 0.1, 0.2] + [0.0] * 9,
        [0.5, 0.7, 0.6] + [0.0] * 9,
        [0.1] + [0.5] * 10 + [0.0],
        [0.4, 0.4] + [0.0] * 10,
    ])
    ranks = ranking.positive_ranks(scores)
    assert ranks.tolist() == [0, 2, 10, 1]
    assert ranking.hit_ratio(ranks, 10) == 0.75
    assert ranking.hit_ratio(ranks, 2) == 0.5
    expected = (1 / math.log2(2) + 1 / math.log2(4) + 0 + 1 / math.log2(3)) / 4
    assert ranking.ndcg(ranks, 10) == pytest.approx(expected)
    got = ranking.evaluate(scores, 10)
    assert got["hr@10"] == 0.75 and got["precision@10"] == pytest.approx(0.075)
    assert 0 <= got["roc_auc"] <= 1


@pytest.mark.parametrize(("row", "rank"), [
    ([0.5, 0.5, 0.5, 0.5, 0.1], 3),  # three negatives tie with the positive: all rank above it
    ([0.0, 0.0, 0.0, 0.0, 0.0], 4),  # nothing to tell apart (cold items all scoring 0): last
    ([0.3, 0.3, 0.9, 0.1, 0.1], 2),  # one higher, one tie
    ([0.3, 0.2, 0.2, 0.2, 0.2], 0),  # ties below the positive do not matter
    ([np.nan, 0.1, 0.2, 0.3, 0.4], 4),  # a NaN positive is never flattered
    ([0.3, np.nan, 0.1, 0.1, 0.1], 1),  # nor beaten by less than a NaN negative
])
def test_ties_go_against_the_positive(row: list[float], rank: int) -> None:
    assert ranking.positive_ranks(np.array([row])).tolist() == [rank]
    assert "pessimistic" in ranking.TIE_RULE


def test_tied_score_matrix_metrics_by_hand() -> None:
    # ItemPop-like integer scores with ties; K = 2
    scores = np.array([
        [3.0, 3.0, 1.0, 1.0],  # rank 1: hit, gain 1/log2(3)
        [1.0, 3.0, 1.0, 1.0],  # rank 3: miss
        [2.0, 1.0, 1.0, 1.0],  # rank 0: hit, gain 1
        [0.0, 0.0, 0.0, 0.0],  # rank 3: miss
    ])
    got = ranking.evaluate(scores, 2)
    assert got["hr@2"] == 0.5
    assert got["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 4)
    # the optimistic rule would have given 0.75 / 0.75 (ranks 0, 1, 0, 0 -> 3 hits at K=2)


def test_negatives_repeating_the_positive_do_not_compete() -> None:
    scores = np.array([[0.4, 0.4, 0.9, 0.1], [0.4, 0.4, 0.1, 0.1]])
    repeats = np.array([[True, False, False], [False, False, False]])
    assert ranking.positive_ranks(scores, repeats).tolist() == [1, 1]
    assert ranking.positive_ranks(scores).tolist() == [2, 1]


def test_warm_metrics_cover_only_the_warm_cases() -> None:
    scores = np.array([[0.9, 0.1, 0.2], [0.0, 0.5, 0.5], [0.5, 0.9, 0.1]])
    warm = np.array([True, False, True])
    got = ranking.evaluate(scores, 1, warm)
    assert got["hr@1"] == pytest.approx(1 / 3) and got["warm_hr@1"] == 0.5
    assert got["warm_ndcg@1"] == 0.5 and set(got) >= {"warm_roc_auc", "warm_pr_auc", "warm_precision@1"}
    assert math.isnan(ranking.evaluate(scores, 1, np.zeros(3, bool))["warm_hr@1"])


def test_cold_start_rule_on_indices() -> None:
    weights = {"mf_user/embeddings": np.array([[1.0, 0.0], [0.0, 1.0]]),
               "mf_item/embeddings": np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]),
               "user_bias/embeddings": np.zeros((2, 1)), "item_bias/embeddings": np.zeros((3, 1)),
               "out/kernel": np.ones((1, 1)), "out/bias": np.zeros(1)}
    popularity = np.array([1.0, 0.5, 0.0])
    u = np.array([0, 1, -1, -1, 0, -1])
    i = np.array([0, 1, 1, 2, -1, -1])
    mf = scoring.scorer_for({"kind": "mf"}, {**weights, "popularity": popularity})
    got = scoring.scores_with_cold_start(mf, u, i)
    known = mf.scores(u[:2], i[:2])
    np.testing.assert_allclose(got, [known[0], known[1], 0.5, 0.0, 0.0, 0.0])
    pop = scoring.scores_with_cold_start(scoring.PopularityScorer({}, {"popularity": popularity}), u, i)
    np.testing.assert_allclose(pop, [1.0, 0.5, 0.5, 0.0, 0.0, 0.0])


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


def test_reindex_keeps_order_and_maps_dropped_and_unknown_to_minus_one() -> None:
    vocab = pdata.Vocab(["a", "b", "c", "d"])
    kept, mapping = pdata.reindex(vocab, np.array([True, False, True, True]))
    assert kept.ids == ["a", "c", "d"]
    assert mapping[np.array([0, 1, 2, 3, -1])].tolist() == [0, -1, 1, 2, -1]


def _split(frame: pd.DataFrame, mode: str, catalog: list[str] | None = None, negatives: int = 3
           ) -> validation.Split:
    return validation.split(mode, frame["user"], frame["item"], frame["ts"],
                            None if catalog is None else pd.Series(catalog), None,
                            negatives=negatives, fraction=0.25, seed=0)


def test_leave_one_out_keeps_cases_whose_positive_training_never_saw() -> None:
    # b's latest item z occurs nowhere else: the model does not know it, the case stays, cold
    frame = pd.DataFrame({"user": ["a", "a", "a", "b", "b", "c", "c"],
                          "item": ["x", "w", "y", "x", "z", "y", "x"], "ts": [1, 2, 3, 1, 2, 1, 2]})
    got = _split(frame, "leave_one_out", negatives=1)
    assert got.items.ids == ["x", "w", "y"] and got.users.ids == ["a", "b", "c"]
    assert got.cases is not None
    c = got.cases.counts
    assert c["cases"] == 3 and c["cold_positive_cases"] == 1 and c["unknown_candidates"] >= 1
    positives = [got.items.ids[j] if j >= 0 else None for j in got.cases.candidates[:, 0].tolist()]
    assert positives == ["y", None, "x"]
    # every case is scored: the cold positive by the cold-start rule (0), losing to every negative
    popularity = np.bincount(got.train.items, minlength=len(got.items)).astype(float)
    users, items = np.repeat(got.cases.users, 2), got.cases.candidates.ravel()
    s = scoring.scores_with_cold_start(scoring.PopularityScorer({}, {"popularity": popularity}), users,
                                       items).reshape(3, 2)
    assert s[1, 0] == 0.0 and ranking.positive_ranks(s)[1] == 1
    found = validation.evaluator({"kind": "popularity"}, got.cases, 1, popularity)({})
    assert found["hr@1"] == np.mean(ranking.positive_ranks(s) < 1)
    assert c["warm_cases"] + c["cold_cases"] == 3


def test_catalog_items_join_the_vocabulary_and_the_sampled_negatives() -> None:
    frame = pd.DataFrame({"user": ["a", "a", "b", "b"], "item": ["x", "y", "x", "y"], "ts": [1, 2, 1, 2]})
    got = _split(frame, "leave_one_out", catalog=["x", "y", "p", "q", "r"], negatives=3)
    assert got.items.ids == ["x", "y", "p", "q", "r"]
    assert got.cases is not None
    negs = got.cases.candidates[:, 1:]
    assert {got.items.ids[j] for j in negs.ravel().tolist()} <= {"p", "q", "r"}  # never a seen item
    c = got.cases.counts
    assert c["cold_negative_cases"] == 2 and c["unknown_candidates"] == 0 and c["warm_cases"] == 0


def test_time_split_users_training_never_saw_take_the_cold_start_path() -> None:
    frame = pd.DataFrame({"user": ["a", "a", "b", "b", "late"], "item": ["x", "y", "y", "w", "x"],
                          "ts": [1, 2, 3, 4, 9]})
    got = _split(frame, "time", negatives=1)
    assert got.users.ids == ["a", "b"] and got.cases is not None
    assert got.cases.users.tolist() == [-1] and got.cases.counts["cold_user_cases"] == 1
    popularity = np.array([1.0, 1.0, 0.5])  # x, y, w
    found = validation.evaluator({"kind": "mf"}, got.cases, 1, popularity)({})  # no weights needed
    assert found["hr@1"] in (0.0, 1.0)


def test_case_counts_by_hand() -> None:
    trained = np.array([True, True, False])  # item 2 is a catalog item without interactions
    users = np.array([0, -1, 1, 0])
    candidates = np.array([[0, 1, 1], [0, 1, 1], [2, 0, 1], [0, 2, -1]])
    c = validation.describe(users, candidates, trained).counts
    assert c == {"cases": 4, "warm_cases": 1, "cold_cases": 3, "cold_user_cases": 1, "cold_positive_cases": 1,
                 "cold_negative_cases": 1, "candidates": 12, "cold_candidates": 3, "unknown_candidates": 1,
                 "negatives_repeating_positive": 0}
