"""Global importance in evaluation.json, evaluation.md and feature_importance.png, and the Clarify
baseline of numeric-input models: real models trained on small seeded data where one field alone
carries the label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from container.paths import MLPaths
from modelformat.gender.contributions import EXPLAINER_BASELINE, FIELDS, attributions
from modelformat.gender.features import load_pipeline
from modelformat.gender.scorers import XGBoostScorer
from tests import factories
from training.checkpoints import StopFlag
from training.cli import run
from training.gender import evaluate, synth

CHANNELS = {"train": {"ContentType": "text/csv"}, "validation": {"ContentType": "text/csv"}}


def _signal_in_installed_apps(rows: int, seed: int) -> pd.DataFrame:
    """Device records whose label is whether app_7 is installed (5% flipped); every other field is
    noise drawn independently of it."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(rows):
        apps = [f"app_{a}" for a in sorted(rng.choice(20, size=int(rng.integers(1, 8)), replace=False))]
        male = ("app_7" in apps) != (rng.random() < 0.05)
        n_events = int(rng.integers(0, 6))
        brand = ["Xiaomi", "Samsung", "Huawei", "vivo", "OPPO"][int(rng.integers(0, 5))]
        records.append({
            "gender": "M" if male else "F", "phone_brand": brand,
            "device_model": f"{brand} {int(rng.integers(0, 3))}", "installed_apps": apps,
            "active_apps": [], "app_categories": [],
            "event_timestamps": [f"2016-05-0{int(rng.integers(1, 8))} {int(rng.integers(0, 24)):02d}:00:00"
                                 for _ in range(n_events)],
            "event_lats": [float(v) for v in rng.normal(30.0, 1.0, n_events).round(4)],
            "event_lons": [float(v) for v in rng.normal(115.0, 1.0, n_events).round(4)],
        })
    return pd.DataFrame.from_records(records)


def _signal_in_f3(rows: int, seed: int) -> pd.DataFrame:
    """Numeric rows, label first: the label follows f3 alone; the other columns are noise, some of
    them on a far larger scale, and every column has its own mean (so an order mix-up shows)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5)) * np.array([10.0, 1.0, 5.0, 1.0, 3.0]) + np.arange(5) * 7.0 - 4.0
    label = ((x[:, 3] - 17.0) + rng.normal(0, 0.3, rows) > 0).astype(int)
    frame = pd.DataFrame(x.round(6), columns=[f"f{i}" for i in range(5)])
    frame.insert(0, "label", label)
    return frame


def _train(base: Path, hps: dict[str, Any], numeric: bool) -> MLPaths:
    paths = factories.opt_ml(base, hps, CHANNELS)
    for channel, rows, seed in (("train", 300, 0), ("validation", 150, 1)):
        if numeric:
            _signal_in_f3(rows, seed).to_csv(paths.channel(channel) / "rows.csv", index=False, header=False)
        else:
            synth.write(_signal_in_installed_apps(rows, seed), paths.channel(channel) / "devices.csv", "csv")
    run(paths, StopFlag())
    return paths


@pytest.fixture(scope="module")
def device_xgb(tmp_path_factory: pytest.TempPathFactory) -> MLPaths:
    return _train(tmp_path_factory.mktemp("fi-devices"), {**factories.FAST_XGB}, numeric=False)


@pytest.fixture(scope="module")
def numeric_lr(tmp_path_factory: pytest.TempPathFactory) -> MLPaths:
    return _train(tmp_path_factory.mktemp("fi-numeric"), {"algorithm": "logreg"}, numeric=True)


def _evaluation(paths: MLPaths) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((paths.output_data_dir / "evaluation.json").read_text())
    return summary


def _manifest(paths: MLPaths) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((paths.model_dir / "model.json").read_text())
    return manifest


def test_evaluation_has_one_entry_per_raw_field_sorted(device_xgb: MLPaths) -> None:
    summary = _evaluation(device_xgb)
    found = summary["global_importance"]
    assert found["rows"] == 150 and found["sample"] is None
    assert found["unit"] == "mean |log-odds contribution| of the positive class"
    assert "TreeSHAP" in found["method"]
    names = [f["field"] for f in found["fields"]]
    assert sorted(names) == sorted(FIELDS) and len(names) == len(FIELDS)
    values = [f["mean_abs"] for f in found["fields"]]
    assert values == sorted(values, reverse=True) and values[0] > 0
    assert all(abs(f["mean"]) <= f["mean_abs"] + 1e-12 for f in found["fields"])
    assert "global_importance" not in _manifest(device_xgb)["metrics"]
    # The values are the served attributions averaged over the validation rows (not train's).
    model_dir = device_xgb.model_dir
    pipeline = load_pipeline(model_dir)
    x_val = pipeline.transform(_signal_in_installed_apps(150, 1).drop(columns=["gender"]))
    per_record = attributions(pipeline, XGBoostScorer.load(model_dir, _manifest(device_xgb)), x_val)
    expected = dict(zip(per_record.headers, np.abs(per_record.values).mean(axis=0), strict=True))
    signed = dict(zip(per_record.headers, per_record.values.mean(axis=0), strict=True))
    for entry in found["fields"]:
        assert entry["mean_abs"] == pytest.approx(expected[entry["field"]], abs=1e-5)
        assert entry["mean"] == pytest.approx(signed[entry["field"]], abs=1e-5)


def test_the_plot_and_the_report(device_xgb: MLPaths) -> None:
    summary = _evaluation(device_xgb)
    assert summary["plots"] == ["roc_curve.png", "pr_curve.png", "feature_importance.png"]
    assert (device_xgb.output_data_dir / "feature_importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (device_xgb.output_data_dir / "evaluation.md").read_text()
    rows = [line.split("|")[1].strip() for line in report.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in FIELDS]
    assert rows == [f["field"] for f in summary["global_importance"]["fields"]]
    assert "feature_importance.png" in report


def test_the_field_that_carries_the_signal_comes_first(device_xgb: MLPaths, numeric_lr: MLPaths) -> None:
    device = _evaluation(device_xgb)["global_importance"]["fields"]
    assert device[0]["field"] == "installed_apps"
    assert device[0]["mean_abs"] > 3 * device[1]["mean_abs"]
    numeric = _evaluation(numeric_lr)["global_importance"]
    assert "training mean" in numeric["method"]
    assert numeric["fields"][0]["field"] == "4"  # f3: column 4 of a header-less CSV
    assert sorted(f["field"] for f in numeric["fields"]) == ["1", "2", "3", "4", "5"]


def test_a_large_validation_set_is_sampled_with_the_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate, "TREE_ROWS", 40)
    paths = _train(tmp_path, {**factories.FAST_XGB, "num_round": 3, "seed": 5}, numeric=True)
    found = _evaluation(paths)["global_importance"]
    assert found["rows"] == 40
    assert found["sample"] == "40 of the 150 validation rows, drawn at random with seed 5"
    assert found["fields"][0]["field"] == "4"


def test_a_scorer_without_attributions_gives_no_importance(numeric_lr: MLPaths) -> None:
    class Opaque:
        def predict_proba(self, x: Any) -> np.ndarray:
            return np.full(x.shape[0], 0.5)

    pipeline = load_pipeline(numeric_lr.model_dir)
    assert evaluate.global_importance(pipeline, Opaque(), np.zeros((3, 5), dtype=np.float32), 0) is None


def test_numeric_models_carry_the_clarify_baseline(numeric_lr: MLPaths) -> None:
    manifest = _manifest(numeric_lr)
    assert manifest["explainer_baseline"] == EXPLAINER_BASELINE == "explainer-baseline.csv"
    assert EXPLAINER_BASELINE in manifest["files"]
    text = (numeric_lr.model_dir / EXPLAINER_BASELINE).read_text()
    assert text.endswith("\n") and text.count("\n") == 1  # one row, no header
    cells = text.strip().split(",")
    assert cells == [repr(float(c)) for c in cells]  # repr precision: each cell reads back as written
    train = pd.read_csv(numeric_lr.channel("train") / "rows.csv", header=None).drop(columns=0)
    assert len(cells) == len(manifest["input"]["columns"]) == train.shape[1]
    np.testing.assert_allclose([float(c) for c in cells], train.mean(axis=0).to_numpy(), rtol=1e-12)


def test_device_record_models_have_no_baseline(device_xgb: MLPaths) -> None:
    manifest = _manifest(device_xgb)
    assert "explainer_baseline" not in manifest
    assert EXPLAINER_BASELINE not in manifest["files"]
    assert not (device_xgb.model_dir / EXPLAINER_BASELINE).exists()


def test_the_baseline_skips_missing_values_and_is_0_for_a_column_without_any() -> None:
    from training.gender import task

    frame = pd.DataFrame({"a": [1.0, np.nan, 2.0], "b": [np.nan] * 3, "c": [True, False, False], "d": [3, 4, 6]})
    assert task._explainer_baseline(frame) == f"1.5,0.0,{1 / 3!r},{13 / 3!r}\n"
