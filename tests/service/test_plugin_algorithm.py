"""A throw-away algorithm, written and registered in this file alone, trains through `train` and
serves through /invocations and the portal: the registry is the one door (no other file names it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from container.settings import Settings
from inference.app import create_app
from modelformat import scorers
from modelformat.gender.scorers import Matrix
from tests import factories
from training import registry
from training.checkpoints import StopFlag
from training.cli import run
from training.gender.algorithms import FitContext, FitResult, GenderAlgorithm
from training.hyperparameters import Hyperparameter as HP


class CentroidScorer:
    """Positive-class probability from the direction between the two class centroids."""

    MODEL_FILE = "centroid.json"

    def __init__(self, direction: np.ndarray, offset: float, temperature: float) -> None:
        self.direction, self.offset, self.temperature = direction, offset, temperature

    def predict_proba(self, x: Matrix) -> np.ndarray:
        z = (np.asarray(x @ self.direction).ravel() - self.offset) / self.temperature
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def save(self, folder: Path) -> list[str]:
        (folder / self.MODEL_FILE).write_text(json.dumps({
            "direction": self.direction.tolist(), "offset": self.offset, "temperature": self.temperature}))
        return [self.MODEL_FILE]

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any], threads: int = 1) -> CentroidScorer:
        data = json.loads((folder / cls.MODEL_FILE).read_text())
        return cls(np.asarray(data["direction"]), data["offset"], data["temperature"])


class Centroid(GenderAlgorithm):
    name = "centroid"
    scorer_class = CentroidScorer
    hyperparameters = (HP("temperature", float, 1.0, "Softness of the probabilities.", min=0.01, max=100.0),)

    def fit(self, x: Matrix, y: np.ndarray, x_val: Matrix | None, y_val: np.ndarray | None,
            ctx: FitContext) -> FitResult:
        dense = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        pos, neg = dense[y == 1].mean(axis=0), dense[y == 0].mean(axis=0)
        self.direction = pos - neg
        self.offset = float((pos + neg) @ self.direction / 2)
        return FitResult(1, 1)

    def scorer(self) -> CentroidScorer:
        return CentroidScorer(self.direction, self.offset, float(self.params["temperature"]))


@pytest.fixture
def centroid_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.ALGORITHMS, "centroid",
                        registry.Registered("gender", __name__, "Centroid"))
    monkeypatch.setattr(scorers, "SCORER_PACKAGES", [*scorers.SCORER_PACKAGES, "tests."])


def test_a_registered_algorithm_trains_and_serves(centroid_registered: None, tmp_path: Path) -> None:
    paths = factories.opt_ml(tmp_path / "opt_ml", {"algorithm": "centroid", "temperature": 0.5})
    factories.write_devices(paths, rows=300)
    manifest = run(paths, StopFlag())
    assert manifest["algorithm"] == "centroid"
    assert manifest["scorer"] == f"{__name__}:CentroidScorer"
    assert manifest["metrics"]["roc_auc"] > 0.6  # the synthetic genders are separable

    app = create_app(Settings.from_env({"SM_BASE_DIR": str(paths.base), "MLAPP_JOB_WORKER": "false"}))
    assert app.extensions["model"].wait(30), app.extensions["model"].reason
    client = app.test_client()
    assert client.get("/ping").status_code == 200
    records = json.loads(factories.devices(4, seed=5).drop(columns=["gender"]).to_json(orient="records"))
    answer = client.post("/invocations", json=records)
    assert answer.status_code == 200
    predictions = answer.get_json()["predictions"]
    assert len(predictions) == 4 and {p["label"] for p in predictions} <= {"F", "M"}
    portal = client.post("/api/providers/prediction/invoke", json={"model": "gender", "input": records})
    assert portal.status_code == 200 and len(portal.get_json()["predictions"]) == 4
    app.extensions["portal"].close()


def test_its_hyperparameters_are_validated_and_listed(centroid_registered: None, tmp_path: Path) -> None:
    from training.gender import task

    assert "centroid" in next(h for h in task.common() if h.name == "algorithm").choices
    paths = factories.opt_ml(tmp_path / "opt_ml", {"algorithm": "centroid", "temperature": 0})
    factories.write_devices(paths, rows=50)
    with pytest.raises(Exception, match="temperature"):
        run(paths, StopFlag())


def test_a_model_cannot_name_a_scorer_outside_the_allowed_packages(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside the allowed packages"):
        scorers.scorer_class({"scorer": "os:system"})


def test_models_of_earlier_releases_without_a_named_scorer_still_serve(gender_model: Any, tmp_path: Path) -> None:
    import shutil

    from inference import predictors

    old = tmp_path / "model"
    shutil.copytree(gender_model.model_dir, old)
    manifest = json.loads((old / "model.json").read_text())
    del manifest["scorer"]  # as `train` wrote it before manifests named their scorer
    (old / "model.json").write_text(json.dumps(manifest))
    served = predictors.load(old)
    served.warmup()
    assert type(served.scorer).__name__ == "XGBoostScorer"  # type: ignore[attr-defined]
