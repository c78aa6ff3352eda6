"""A booster the gender scorer cannot serve, dropped into a model directory, is refused at load:
/ping stays 503 and says why, instead of a 500 for one row and a list for a probability for several."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from container.paths import MLPaths
from container.settings import Settings
from inference.app import create_app


def _model_with(numeric_model: MLPaths, tmp_path: Path, params: dict[str, object]) -> MLPaths:
    """The numeric model's directory with its booster replaced by one trained with ``params``."""
    paths = MLPaths(tmp_path)
    shutil.copytree(numeric_model.model_dir, paths.model_dir)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = np.digitize(x[:, 0], [-0.5, 0.5]).astype(float)  # 0, 1 or 2
    if params["objective"] == "binary:logistic":
        y = (y > 0).astype(float)
    booster = xgb.train({"nthread": 1, "max_depth": 2, **params}, xgb.DMatrix(x, label=y), 3)
    booster.save_model(str(paths.model_dir / "xgboost-model.ubj"))
    return paths


@pytest.mark.parametrize(("params", "named"), [
    ({"objective": "multi:softprob", "num_class": 3}, "3 classes"),
    ({"objective": "reg:squarederror"}, "reg:squarederror"),
])
def test_ping_is_503_naming_the_booster_it_cannot_serve(numeric_model: MLPaths, tmp_path: Path,
                                                       params: dict[str, object], named: str) -> None:
    paths = _model_with(numeric_model, tmp_path, params)
    app = create_app(Settings.from_env({"SM_BASE_DIR": str(paths.base), "MLAPP_JOB_WORKER": "false"}))
    slot = app.extensions["model"]
    assert not slot.wait(30)
    resp = app.test_client().get("/ping")
    assert resp.status_code == 503
    assert named in resp.get_json()["reason"], resp.get_json()


def test_a_binary_booster_in_the_same_directory_serves(numeric_model: MLPaths, tmp_path: Path) -> None:
    paths = _model_with(numeric_model, tmp_path, {"objective": "binary:logistic"})
    app = create_app(Settings.from_env({"SM_BASE_DIR": str(paths.base), "MLAPP_JOB_WORKER": "false"}))
    assert app.extensions["model"].wait(30), app.extensions["model"].reason
    resp = app.test_client().post("/invocations", data=b"1,2,3,4,5,6\n0,0,0,0,0,0\n", content_type="text/csv",
                                      headers={"Accept": "text/csv"})
    assert resp.status_code == 200 and len(resp.get_data().splitlines()) == 2
