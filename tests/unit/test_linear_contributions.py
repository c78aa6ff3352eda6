"""Logistic regression's attributions against the training mean: coefficient x (value - mean), the
bias the margin of the mean row, stored with the model; a model directory without means still
loads and explains against 0, as before. Real models trained on small seeded data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from container.paths import MLPaths
from inference import predictors
from inference.codecs import Inputs
from modelformat.gender import contributions
from modelformat.gender.contributions import FIELDS, LINEAR_METHOD, LINEAR_METHOD_NO_MEANS, attributions
from modelformat.gender.features import Pipeline, load_pipeline
from modelformat.gender.scorers import LinearScorer
from tests import factories
from training.checkpoints import StopFlag
from training.cli import run


def _train(base: Path, numeric: bool) -> MLPaths:
    hps = {"algorithm": "logreg", "validation_fraction": 0, **({"input_format": "numeric"} if numeric else {})}
    paths = factories.opt_ml(base, hps)
    if numeric:
        factories.write_numeric(paths, rows=300, features=5, header=True)
    else:
        factories.write_devices(paths, rows=300)
    run(paths, StopFlag())
    return paths


@pytest.fixture(scope="module")
def device_lr(tmp_path_factory: pytest.TempPathFactory) -> MLPaths:
    return _train(tmp_path_factory.mktemp("lr-devices"), numeric=False)


@pytest.fixture(scope="module")
def numeric_lr(tmp_path_factory: pytest.TempPathFactory) -> MLPaths:
    return _train(tmp_path_factory.mktemp("lr-numeric"), numeric=True)


def _load(model_dir: Path) -> tuple[Pipeline, LinearScorer]:
    manifest = json.loads((model_dir / "model.json").read_text())
    return load_pipeline(model_dir), LinearScorer.load(model_dir, manifest)


def _train_frame(paths: MLPaths) -> pd.DataFrame:
    if (paths.channel("train") / "numeric.csv").exists():
        return pd.read_csv(paths.channel("train") / "numeric.csv").drop(columns="label")
    return factories.devices(300).drop(columns=["gender"])


def _margin(scorer: LinearScorer, x: Any) -> np.ndarray:
    return np.asarray(x @ scorer.coef, dtype=np.float64).ravel() + scorer.intercept


@pytest.mark.parametrize("which", ["device_lr", "numeric_lr"])
def test_the_stored_means_are_the_training_feature_means(which: str, request: pytest.FixtureRequest) -> None:
    paths: MLPaths = request.getfixturevalue(which)
    pipeline, scorer = _load(paths.model_dir)
    assert scorer.feature_mean is not None and scorer.feature_mean.shape == (pipeline.n_features,)
    xt: Any = pipeline.transform(_train_frame(paths))
    dense = xt.toarray() if sp.issparse(xt) else np.asarray(xt)
    np.testing.assert_allclose(scorer.feature_mean, dense.astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-6)
    assert np.abs(scorer.feature_mean).max() > 0.01  # not all zeros: the bag and one-hot columns are not


@pytest.mark.parametrize(("which", "sparse"), [("device_lr", True), ("numeric_lr", False)])
def test_attributions_plus_bias_equal_the_margin(which: str, sparse: bool, request: pytest.FixtureRequest,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    paths: MLPaths = request.getfixturevalue(which)
    monkeypatch.setattr(contributions, "CHUNK", 7)  # several chunks, the last one short
    pipeline, scorer = _load(paths.model_dir)
    x: Any = pipeline.transform(_train_frame(paths).head(40))
    assert sp.issparse(x) is sparse
    found = attributions(pipeline, scorer, x)
    assert found.method == LINEAR_METHOD
    assert found.headers == (list(FIELDS) if sparse else pipeline.feature_names)
    assert scorer.feature_mean is not None
    assert found.bias == pytest.approx(scorer.intercept + float(scorer.coef @ scorer.feature_mean), abs=1e-9)
    assert abs(found.bias - scorer.intercept) > 1e-3  # against the mean, not the intercept
    margin = _margin(scorer, x)
    np.testing.assert_allclose(found.values.sum(axis=1) + found.bias, margin, rtol=0, atol=1e-5)
    np.testing.assert_allclose(found.margins, margin, rtol=0, atol=1e-5)
    # The folded sums (x @ the field's coefficients) agree with the per-column contributions folded.
    per_column, bias, _ = contributions.feature_contributions(scorer, x)
    _, groups = contributions.field_groups(pipeline)
    by_field = np.stack([per_column[:, groups == g].sum(axis=1) for g in range(len(found.headers))], axis=1)
    np.testing.assert_allclose(found.values, by_field, rtol=0, atol=1e-9)
    assert bias == pytest.approx(found.bias)
    expected = (np.asarray(x.toarray() if sparse else x, dtype=np.float64) - scorer.feature_mean) * scorer.coef
    np.testing.assert_allclose(per_column, expected, rtol=0, atol=1e-12)


def test_the_mean_feature_row_is_attributed_nothing(device_lr: MLPaths) -> None:
    pipeline, scorer = _load(device_lr.model_dir)
    assert scorer.feature_mean is not None
    found = attributions(pipeline, scorer, sp.csr_matrix(scorer.feature_mean[None, :]))
    np.testing.assert_allclose(found.values, 0.0, atol=1e-9)
    assert found.margins[0] == pytest.approx(found.bias, abs=1e-9)


def test_a_record_at_the_training_mean_is_attributed_nothing(numeric_lr: MLPaths) -> None:
    """A numeric record whose values are the training means (as the Clarify baseline holds them):
    every column's attribution ~0, its margin the bias; one column off the mean takes it all."""
    predictor: Any = predictors.load(numeric_lr.model_dir)
    baseline = (numeric_lr.model_dir / "explainer-baseline.csv").read_text().strip().split(",")
    record = dict(zip(predictor.pipeline.feature_names, map(float, baseline), strict=True))
    found = predictor.explain(Inputs(raw=[record]))
    np.testing.assert_allclose(found.values, 0.0, atol=1e-6)  # float32 rows: ~1e-8 off the mean
    moved = predictor.explain(Inputs(raw=[{**record, "f2": record["f2"] + 1.0}]))
    assert moved.values[0, 2] == pytest.approx(float(predictor.scorer.coef[2]), abs=1e-5)
    assert np.abs(np.delete(moved.values[0], 2)).max() < 1e-6


def test_a_model_dir_without_means_loads_and_explains_against_zero(device_lr: MLPaths, tmp_path: Path) -> None:
    """A logistic regression saved before the means were stored (no ``feature_mean``): served and
    explained as then, coef x value with the intercept as the bias."""
    import shutil

    old = tmp_path / "old-model"
    shutil.copytree(device_lr.model_dir, old)
    model_file = old / LinearScorer.MODEL_FILE
    data = json.loads(model_file.read_text())
    del data["feature_mean"]
    model_file.write_text(json.dumps(data))
    predictor: Any = predictors.load(old)
    assert predictor.scorer.feature_mean is None
    records = json.loads(factories.devices(6, seed=3).drop(columns=["gender"]).to_json(orient="records"))
    found = predictor.explain(Inputs(raw=records))
    x = predictor.features(Inputs(raw=records))
    assert found.method == LINEAR_METHOD_NO_MEANS and found.bias == pytest.approx(data["intercept"])
    np.testing.assert_allclose(found.values.sum(axis=1) + found.bias, _margin(predictor.scorer, x), atol=1e-5)
    per_column, _, _ = contributions.feature_contributions(predictor.scorer, x)
    np.testing.assert_allclose(per_column, x.toarray() * predictor.scorer.coef, atol=1e-12)
    # The same records against the stored means: another split, the same margins.
    new = attributions(*_load(device_lr.model_dir), x)
    np.testing.assert_allclose(new.margins, found.margins, atol=1e-5)
    assert not np.allclose(new.values, found.values, atol=1e-3)


def test_means_that_do_not_fit_the_coefficients_are_refused(device_lr: MLPaths, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad-model"
    shutil.copytree(device_lr.model_dir, bad)
    model_file = bad / LinearScorer.MODEL_FILE
    data = json.loads(model_file.read_text())
    data["feature_mean"] = data["feature_mean"][:-1]
    model_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="feature means for"):
        LinearScorer.load(bad, {})
