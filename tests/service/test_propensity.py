"""Propensity models: train each algorithm on tiny data through `train`, serve and score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from container.paths import MLPaths
from container.settings import Settings
from inference import predictors
from inference.app import create_app
from inference.codecs import Inputs
from tests import factories
from training import cli
from training.checkpoints import StopFlag
from training.propensity import synth

ALGOS = ["popularity", "mf", "gmf", "mlp", "neumf", "wide_deep"]
FAST = {"epochs": 2, "batch_size": 128, "factors": 4, "patience": 0}


def _opt_ml(base: Path, hps: dict[str, Any], with_side: bool = False) -> MLPaths:
    channels = {"train": {"ContentType": "text/csv"}}
    if with_side:
        channels |= {"users": {}, "items": {}}
    paths = factories.opt_ml(base, hps, channels)
    inter, users, items = synth.generate(40, 25, 8, seed=1)
    inter.to_csv(paths.channel("train") / "interactions.csv", index=False)
    if with_side:
        users.to_csv(paths.channel("users") / "users.csv", index=False)
        items.to_csv(paths.channel("items") / "items.csv", index=False)
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MLPaths]:
    out = {}
    for algo in ALGOS:
        hps = {"algorithm": algo} if algo == "popularity" else {"algorithm": algo, **FAST}
        paths = _opt_ml(tmp_path_factory.mktemp(algo) / "opt_ml", hps, with_side=algo == "wide_deep")
        assert cli.run(paths, StopFlag())
        out[algo] = paths
    return out


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_trains_serves_and_scores(trained: dict[str, MLPaths], algo: str) -> None:
    paths = trained[algo]
    manifest = json.loads((paths.model_dir / "model.json").read_text())
    assert manifest["family"] == "propensity" and manifest["algorithm"] == algo
    assert manifest["vocabulary"] == {"users": 40, "items": 25}
    assert {"hr@10", "ndcg@10", "roc_auc", "pr_auc", "precision@10"} <= set(manifest["metrics"])
    assert manifest["libraries"]["numpy"]
    app = create_app(Settings.from_env({"SM_BASE_DIR": str(paths.base)}))
    assert app.extensions["model"].wait(30), app.extensions["model"].reason
    client = app.test_client()
    assert client.get("/ping").status_code == 200
    pairs = client.post("/invocations", json=[{"user": "u0001", "item": "m0003"}, {"user": "u0002", "item": "m0004"}])
    assert pairs.status_code == 200
    scores = [p["score"] for p in pairs.get_json()["predictions"]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    top = client.post("/invocations", json={"user": "u0001", "k": 5})
    assert len(top.get_json()["predictions"][0]["items"]) == 5


def test_training_writes_curves_and_epoch_metric_lines(trained: dict[str, MLPaths]) -> None:
    out = trained["neumf"].output_data_dir
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    history = json.loads((out / "evaluation.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1.0, 2.0]


def test_learning_rate_decays_per_epoch(tmp_path: Path) -> None:
    hps = {"algorithm": "gmf", **FAST, "epochs": 3, "learning_rate": 0.01, "lr_decay": 0.5}
    paths = _opt_ml(tmp_path / "opt_ml", hps)
    assert cli.run(paths, StopFlag())
    history = json.loads((paths.output_data_dir / "evaluation.json").read_text())["history"]
    assert [h["learning_rate"] for h in history] == pytest.approx([0.01, 0.005, 0.0025])


def test_weight_averaging_leaves_the_model_on_the_averaged_weights() -> None:
    """`ema`: the trainer evaluates and checkpoints what fit() leaves, which must be the average."""
    import keras

    from training.propensity.trainer import make_optimizer

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=make_optimizer("sgd", 0.1, ema=0.5), loss="mse")
    raw: list[np.ndarray] = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            raw.append(model.layers[0].kernel.numpy().copy())

    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    model.fit(x, x.sum(axis=1), batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[Record()])
    average = raw[0]
    for w in raw[1:]:
        average = 0.5 * average + 0.5 * w
    assert len(raw) == 4 and not np.allclose(raw[-1], average)
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), average, rtol=1e-5)


def test_scored_start_stays_when_every_epoch_is_worse() -> None:
    """`score_start`: starting weights that beat every epoch are what fit() leaves."""
    from training.propensity import networks
    from training.propensity.data import Interactions, SeenItems
    from training.propensity.trainer import LoopConfig, fit

    inter, _, _ = synth.generate(30, 20, 6, seed=3)
    users = inter["user"].astype("category").cat.codes.to_numpy(np.int32)
    items = inter["item"].astype("category").cat.codes.to_numpy(np.int32)
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    arch = {"kind": "gmf", "factors": 4, "mlp_layers": [8, 4]}
    model = networks.gmf(arch, n_users, n_items)
    start = [w.copy() for w in model.get_weights()]
    calls = iter([0.9, 0.5, 0.6])
    cfg = LoopConfig(epochs=2, batch_size=64, negatives=1, learning_rate=0.1, optimizer="adam", patience=0,
                     monitor="ndcg@10", seed=0, score_start=True)
    res = fit(model, arch, Interactions(users, items, None), SeenItems(users, items, n_users, n_items),
              n_items, cfg, StopFlag(), None, lambda w: {"ndcg@10": next(calls)}, lambda m, step: None)
    assert res.best_epoch == 0 and res.best == {"ndcg@10": 0.9}
    assert [h["epoch"] for h in res.history] == [0.0, 1.0, 2.0]
    for kept, now in zip(start, model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, now)


def test_top_k_excludes_seen_items_and_respects_candidates(trained: dict[str, MLPaths]) -> None:
    model = predictors.load(trained["mf"].model_dir)
    import pandas as pd

    inter = pd.read_csv(trained["mf"].channel("train") / "interactions.csv")
    seen = set(inter[inter.user == "u0003"].item)
    out = model.predict(Inputs(table=pd.DataFrame([{"user": "u0003", "k": 25}])))
    items = out.columns["items"][0]
    assert not seen & set(items) and len(items) == 25 - len(seen)
    out = model.predict(Inputs(table=pd.DataFrame([{"user": "u0003", "k": 25, "exclude_seen": False}])))
    assert set(out.columns["items"][0]) >= seen
    cands = ["m0001", "m0002", "m0005", "unknown-item"]
    out = model.predict(Inputs(table=pd.DataFrame([{"user": "u0003", "k": 10, "candidates": cands,
                                                    "exclude_seen": False}])))
    got = out.columns["items"][0]
    assert set(got) == {"m0001", "m0002", "m0005"}
    scores = out.columns["scores"][0]
    assert scores == sorted(scores, reverse=True)


def test_unknown_ids_get_defined_answers(trained: dict[str, MLPaths]) -> None:
    client = create_app(Settings.from_env({"SM_BASE_DIR": str(trained["neumf"].base)})).test_client()
    client.application.extensions["model"].wait(30)
    resp = client.post("/invocations", json=[{"user": "new-user", "item": "m0001"}, {"user": "u0001", "item": "new-item"}])
    preds = resp.get_json()["predictions"]
    assert resp.status_code == 200 and preds[0]["cold_start"] and preds[1]["cold_start"]
    assert preds[1]["score"] == 0.0 and preds[0]["score"] > 0
    top = client.post("/invocations", json={"user": "new-user", "k": 3}).get_json()["predictions"][0]
    assert top["cold_start"] and len(top["items"]) == 3
    assert top["scores"] == sorted(top["scores"], reverse=True)


def test_propensity_error_rules(trained: dict[str, MLPaths]) -> None:
    client = create_app(Settings.from_env({"SM_BASE_DIR": str(trained["gmf"].base)})).test_client()
    client.application.extensions["model"].wait(30)
    for body, message in [([{"item": "m1"}], "needs a 'user' field"), ({"user": "u0001", "k": "lots"}, "k must be a whole number"),
                          ({"user": "u0001", "k": 0}, "k must be between"), ({"user": "u0001", "candidates": {"a": 1}}, "candidates must be a list")]:
        resp = client.post("/invocations", json=body)
        assert resp.status_code == 400 and message in resp.get_json()["error"]["message"], resp.get_json()
    assert client.post("/invocations", data="x", content_type="application/xml").status_code == 415
    assert client.post("/invocations", json={"user": "u0001"}, headers={"Accept": "image/png"}).status_code == 406
    csv = client.post("/invocations", data="user,item\nu0001,m0002\n", content_type="text/csv", headers={"Accept": "text/csv"})
    assert csv.get_data(as_text=True).startswith("u0001,m0002,")
    lines = client.post("/invocations", data='{"user":"u0001","k":2}\n{"user":"u0002","k":2}\n',
                        content_type="application/jsonlines", headers={"Accept": "application/jsonlines"})
    assert len(lines.get_data(as_text=True).splitlines()) == 2


def test_numpy_scorer_matches_keras_predict(trained: dict[str, MLPaths]) -> None:
    import keras

    from training.propensity import networks

    networks.custom_layers()
    for algo in ("mf", "neumf", "wide_deep"):
        model_dir = trained[algo].model_dir
        served = predictors.load(model_dir)
        net = keras.saving.load_model(model_dir / "model.keras")
        users = np.arange(40).repeat(25).astype(np.int32)
        items = np.tile(np.arange(25), 40).astype(np.int32)
        ours = served.score_indices(users.astype(np.int64), items.astype(np.int64))  # type: ignore[attr-defined]
        theirs = net.predict([users[:, None], items[:, None]], verbose=0, batch_size=4096)[:, 0]
        assert np.allclose(ours, theirs, atol=1e-5), algo


def test_same_seed_same_model(tmp_path: Path) -> None:
    results = []
    for run in range(2):
        paths = _opt_ml(tmp_path / f"r{run}" / "opt_ml", {"algorithm": "gmf", **FAST})
        cli.run(paths, StopFlag())
        with np.load(paths.model_dir / "weights.npz") as w:
            results.append(w["gmf_user/embeddings"].copy())
    assert np.array_equal(results[0], results[1])


def test_pretraining_is_reused_by_jobs_that_change_only_fine_tuning(tmp_path: Path) -> None:
    base = tmp_path / "opt_ml"
    pre = {"algorithm": "neumf", **FAST, "pretrain": True, "pretrain_epochs": 2, "epochs": 1}

    def train(**changes: Any) -> dict[str, Any]:
        paths = _opt_ml(base, {**pre, **changes})
        assert cli.run(paths, StopFlag())
        evaluation = json.loads((paths.output_data_dir / "evaluation.json").read_text())
        # The mixed pre-trained networks are scored as epoch 0, before fine-tuning moves them.
        start, tuned = evaluation["history"]
        assert start["epoch"] == 0 and "train:loss" not in start and tuned["epoch"] == 1
        best = max((start, tuned), key=lambda h: h["validation:ndcg@10"])
        assert evaluation["metrics"]["ndcg@10"] == best["validation:ndcg@10"]
        return evaluation["pretraining"]

    first = train()
    assert first["pretrain_gmf"]["resumed_from"] is None and first["pretrain_mlp"]["resumed_from"] is None
    assert [h["epoch"] for h in first["pretrain_mlp"]["history"]] == [1.0, 2.0]
    assert (base / "output" / "data" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    reused = train(alpha=0.3, finetune_optimizer="adam", finetune_learning_rate=0.01)
    assert reused["pretrain_gmf"]["resumed_from"] == 2 and reused["pretrain_mlp"]["resumed_from"] == 2
    assert reused["pretrain_gmf"]["best"] == first["pretrain_gmf"]["best"]
    # Anything the pre-trained networks depend on starts them afresh.
    fresh = train(alpha=0.3, seed=7)
    assert fresh["pretrain_gmf"]["resumed_from"] is None and fresh["pretrain_mlp"]["resumed_from"] is None


def test_bad_propensity_inputs_fail_with_client_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = factories.opt_ml(tmp_path / "opt_ml", {"algorithm": "neumf", "mlp_layers": "15,8"})
    monkeypatch.setenv("SM_BASE_DIR", str(paths.base))
    (paths.channel("train") / "i.csv").write_text("user,item\na,x\nb,y\na,y\n")
    assert cli.main() == 1
    assert paths.failure.read_text().startswith("ClientError: mlp_layers needs >= 2 positive widths and an even first width")
    factories.opt_ml(paths.base, {"algorithm": "mf", "user_column": "customer"})
    assert cli.main() == 1
    assert paths.failure.read_text().startswith("ClientError: User column 'customer' not found in channel 'train'")
