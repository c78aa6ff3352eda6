"""Propensity validation through `train`: no case dropped, cold ids scored as `serve` scores them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from container.paths import MLPaths
from inference import predictors
from inference.codecs import Inputs
from tests import factories
from training import cli
from training.checkpoints import StopFlag
from training.propensity import synth

K = 3
NEGATIVES = 10


def _validation_rows(train: pd.DataFrame) -> list[dict[str, Any]]:
    """30 cases: 6 of users `train` never saw, 6 cold positives, half with unseen negatives, one
    repeating its positive among its negatives."""
    known = sorted(set(train["item"]))
    rng = np.random.default_rng(0)
    rows = []
    for n in range(30):
        user = f"u{n:04d}" if n < 24 else f"new-user-{n}"
        item = f"new-item-{n}" if n % 5 == 0 else known[n % len(known)]
        pool = [x for x in known if x != item]
        negs = [str(x) for x in rng.choice(pool, NEGATIVES, replace=False)]
        if n % 2:
            negs[-2:] = [f"unseen-{n}-a", f"unseen-{n}-b"]
        if n == 7:
            negs[0] = item
        rows.append({"user": user, "item": item, "negatives": negs})
    return rows


def _train(base: Path, algorithm: str, rows: list[dict[str, Any]] | None = None,
           catalog: list[str] | None = None, **hps: Any) -> tuple[MLPaths, pd.DataFrame]:
    channels: dict[str, dict[str, Any]] = {"train": {"ContentType": "text/csv"}}
    if rows is not None:
        channels["validation"] = {}
    if catalog is not None:
        channels["items"] = {}
    fast = {} if algorithm == "popularity" else {"epochs": 2, "batch_size": 128, "factors": 4, "patience": 0}
    paths = factories.opt_ml(base, {"algorithm": algorithm, "top_k": K, **fast, **hps}, channels)
    inter, _, _ = synth.generate(40, 25, 8, seed=1)
    inter.to_csv(paths.channel("train") / "interactions.csv", index=False)
    if rows is not None:
        with open(paths.channel("validation") / "val.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    if catalog is not None:
        pd.DataFrame({"item": catalog}).to_csv(paths.channel("items") / "catalog.csv", index=False)
    assert cli.run(paths, StopFlag())
    return paths, inter


def _served_ranks(model_dir: Path, rows: list[dict[str, Any]]) -> np.ndarray:
    """The positive's rank among its negatives by the scores `serve` returns (ties against it)."""
    model = predictors.load(model_dir)
    pairs = pd.DataFrame([{"user": r["user"], "item": item} for r in rows
                          for item in [r["item"], *r["negatives"]]])
    scores = np.asarray(model.predict(Inputs(table=pairs)).columns["score"]).reshape(len(rows), -1)
    repeats = np.array([[neg == r["item"] for neg in r["negatives"]] for r in rows])
    return np.asarray(((scores[:, 1:] >= scores[:, :1]) & ~repeats).sum(axis=1))


@pytest.mark.parametrize("algorithm", ["popularity", "mf"])
def test_every_case_is_evaluated_and_cold_counts_are_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: str) -> None:
    inter, _, _ = synth.generate(40, 25, 8, seed=1)
    rows = _validation_rows(inter)
    paths, _ = _train(tmp_path / "opt_ml", algorithm, rows)
    evaluation = json.loads((paths.output_data_dir / "evaluation.json").read_text())
    report = evaluation["validation"]
    seen_items, seen_users = set(inter["item"]), set(inter["user"])
    cold = [r["user"] not in seen_users or not {r["item"], *r["negatives"]} <= seen_items for r in rows]
    assert report["cases"] == evaluation["validation_cases"] == 30
    assert report["cold_user_cases"] == 6 and report["cold_positive_cases"] == 6
    assert report["cold_negative_cases"] == 15 and report["cold_cases"] == sum(cold) == 30 - report["warm_cases"]
    assert report["candidates"] == 30 * (1 + NEGATIVES)
    assert report["cold_candidates"] == report["unknown_candidates"] == 6 + 15 * 2
    assert report["negatives_repeating_positive"] == 1
    assert report["tie_rule"].startswith("pessimistic") and "popularity" in report["cold_start"]

    # The metrics are those of the served scores over all 30 cases, and over the warm ones beside them.
    ranks = _served_ranks(paths.model_dir, rows)
    warm = ~np.array(cold)
    metrics = evaluation["metrics"]
    assert metrics[f"hr@{K}"] == pytest.approx(np.mean(ranks < K))
    assert metrics[f"warm_hr@{K}"] == pytest.approx(np.mean(ranks[warm] < K))
    gains = np.where(ranks < K, 1 / np.log2(ranks + 2.0), 0.0)
    assert metrics[f"ndcg@{K}"] == pytest.approx(gains.mean())
    assert metrics[f"warm_ndcg@{K}"] == pytest.approx(gains[warm].mean())
    # Cold positives score 0: below every negative the model knows, and unknown negatives (0 too)
    # tie with them, which counts against them.
    assert ranks[::5].tolist() == [NEGATIVES] * 6

    final = [line for line in capsys.readouterr().out.splitlines() if "step=final" in line]
    assert len(final) == 1
    assert "validation:cases=30 " in final[0] and f"validation:cold_cases={sum(cold)} " in final[0]
    assert f"validation:cold_candidates={6 + 30} " in final[0] + " " and f"validation:warm_hr@{K}=" in final[0]


def test_catalog_items_join_the_vocabulary_negatives_and_ranking(tmp_path: Path) -> None:
    inter, _, _ = synth.generate(40, 25, 8, seed=1)
    extra = [f"catalog-only-{j}" for j in range(15)]
    catalog = sorted(set(inter["item"])) + extra
    paths, _ = _train(tmp_path / "opt_ml", "popularity", catalog=catalog, eval_negatives=20)
    manifest = json.loads((paths.model_dir / "model.json").read_text())
    assert manifest["vocabulary"]["items"] == len(catalog)
    report = json.loads((paths.output_data_dir / "evaluation.json").read_text())["validation"]
    assert report["cases"] == 40 and report["unknown_candidates"] == 0
    assert report["cold_candidates"] > 0  # catalog items were sampled as negatives
    # The model serves catalog items as known items, not as cold-start ones.
    out = predictors.load(paths.model_dir).predict(
        Inputs(table=pd.DataFrame([{"user": "u0001", "item": "catalog-only-3"}])))
    assert out.columns["cold_start"] == [False] and out.columns["score"] == [0.0]


def test_neural_training_samples_catalog_items_as_negatives(tmp_path: Path) -> None:
    inter, _, _ = synth.generate(40, 25, 8, seed=1)
    catalog = sorted(set(inter["item"])) + [f"catalog-only-{j}" for j in range(15)]
    paths, _ = _train(tmp_path / "opt_ml", "gmf", catalog=catalog)
    with np.load(paths.model_dir / "weights.npz") as w:
        assert w["gmf_item/embeddings"].shape[0] == len(catalog)
    evaluation = json.loads((paths.output_data_dir / "evaluation.json").read_text())
    assert evaluation["validation"]["cases"] == 40
    assert {f"hr@{K}", f"warm_hr@{K}"} <= set(evaluation["metrics"])
