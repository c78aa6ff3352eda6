"""The gender classifiers' exported scorers: positive-class probabilities from a model's files.

Training evaluates with the same objects it exports, so what is measured is what is served.
Files are each library's portable format (XGBoost UBJSON, coefficients as JSON), never pickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from typing_extensions import Buffer

from modelformat import forest as forest_module
from modelformat.forest import Forest, compile_booster
from modelformat.manifest import write_bytes

Matrix: TypeAlias = np.ndarray | sp.csr_matrix


class Scorer(Protocol):
    def predict_proba(self, x: Matrix) -> np.ndarray:
        """Probability of the positive class, one value per row."""
        ...


class XGBoostScorer:
    """XGBoost's booster; batches of up to ``SMALL_BATCH`` dense rows go through the same trees
    compiled to NumPy (modelformat.forest), where XGBoost's per-call overhead is most of the cost."""

    MODEL_FILE = "xgboost-model.ubj"
    SMALL_BATCH = forest_module.SMALL_BATCH
    MAX_CSV_ROWS = 1 << 30  # the C parse's row limit (an int); the payload limit binds long before
    # Objectives whose prediction is one probability per row: anything else (a regression value, a raw
    # margin, a hinge 0/1, a row of class probabilities) would be served as a probability.
    OBJECTIVES = ("binary:logistic", "reg:logistic")

    def __init__(self, booster: Any, forest: Forest | None = None) -> None:
        self.booster = booster
        self.forest = forest

    def predict_proba(self, x: Matrix) -> np.ndarray:
        forest = self.forest
        if forest is not None and x.ndim == 2 and x.shape[0] <= self.SMALL_BATCH \
                and x.shape[1] == forest.n_features:
            if sp.issparse(x):  # XGBoost reads an entry a sparse row does not store as missing
                dense = np.full(x.shape, np.nan, dtype=np.float32)
                csr = x if isinstance(x, sp.csr_matrix) else sp.csr_matrix(x)
                dense[np.repeat(np.arange(x.shape[0]), np.diff(csr.indptr)), csr.indices] = csr.data
                x = dense
            return forest.predict(np.asarray(x)).astype(np.float64)
        return np.asarray(self.booster.inplace_predict(x, validate_features=False), dtype=np.float64)

    def score_csv(self, body: bytes) -> list[float] | np.ndarray | None:
        """``predict_proba`` of a body of plain numeric CSV rows, straight from its bytes, or None
        when the compiled forest's parse cannot read it (see ``Forest.score_csv``): a few rows
        parsed and walked in one C call, a batch parsed by the same C code into the matrix
        XGBoost predicts (for 1,000 rows a sixth of pandas' read_csv and its casts)."""
        forest = self.forest
        if forest is None:
            return None
        few = forest.score_csv(body, self.SMALL_BATCH)
        if few is not None:
            return few
        if body.count(b"\n") < self.SMALL_BATCH:  # a few rows the parse refused: not plain
            return None
        x = forest.csv_matrix(body, self.MAX_CSV_ROWS)
        return None if x is None else self.predict_proba(x)

    def score_rows(self, rows: Buffer, n_rows: int) -> list[float] | None:
        """``predict_proba`` of up to ``SMALL_BATCH`` dense float32 rows laid end to end (NaN where
        a value is missing), or None when the compiled forest cannot score them."""
        forest = self.forest
        if forest is None or n_rows > self.SMALL_BATCH or memoryview(rows).nbytes != \
                4 * n_rows * forest.n_features:
            return None
        return forest.score_rows(rows, n_rows)

    def save(self, folder: Path) -> list[str]:
        # Written by Python rather than XGBoost's own file stream, whose full-disk error is a bare
        # "FileStream.Write incomplete": an OSError (ENOSPC) naming the file tells `train` what to say.
        write_bytes(folder / self.MODEL_FILE, bytes(self.booster.save_raw("ubj")))
        return [self.MODEL_FILE]

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any], threads: int = 1) -> XGBoostScorer:
        import xgboost as xgb

        booster = xgb.Booster(model_file=str(folder / cls.MODEL_FILE))
        cls.check_servable(booster)
        booster.set_param({"nthread": threads})
        return cls(booster, compile_booster(booster))

    @classmethod
    def check_servable(cls, booster: Any) -> None:
        """Refuse a booster whose predictions are not one positive-class probability per row, naming
        why: loaded anyway, a multi-class one failed on one row and answered lists for several."""
        learner = json.loads(booster.save_config())["learner"]
        objective = str(learner["objective"]["name"])
        params = learner["learner_model_param"]
        classes, targets = int(params.get("num_class", 0)), int(params.get("num_target", 1))
        problems = []
        if classes > 1:
            problems.append(f"{classes} classes")
        if targets > 1:
            problems.append(f"{targets} targets")
        if objective not in cls.OBJECTIVES:
            problems.append(f"objective {objective}")
        if problems:
            raise ValueError(
                f"{cls.MODEL_FILE} holds a booster with {', '.join(problems)}; the gender model serves one "
                f"probability per row, from a booster with objective {' or '.join(cls.OBJECTIVES)}, one "
                "target and no classes (train it with this image's xgboost algorithm)")


class LinearScorer:
    """Coefficients and intercept, plus the training mean of each feature column when the model
    stores them (what explanations count against; None for a model trained before they were)."""

    MODEL_FILE = "logreg-model.json"

    def __init__(self, coef: np.ndarray, intercept: float, feature_mean: np.ndarray | None = None) -> None:
        self.coef = coef.astype(np.float64)
        self.intercept = float(intercept)
        self.feature_mean = None if feature_mean is None else np.asarray(feature_mean, dtype=np.float64)
        if self.feature_mean is not None and self.feature_mean.shape != self.coef.shape:
            raise ValueError(f"{self.MODEL_FILE} holds {self.feature_mean.size} feature means for "
                             f"{self.coef.size} coefficients")

    def predict_proba(self, x: Matrix) -> np.ndarray:
        z = np.asarray(x @ self.coef).ravel() + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def save(self, folder: Path) -> list[str]:
        data: dict[str, Any] = {"coef": self.coef.tolist(), "intercept": self.intercept}
        if self.feature_mean is not None:
            data["feature_mean"] = self.feature_mean.tolist()
        (folder / self.MODEL_FILE).write_text(json.dumps(data), encoding="utf-8")
        return [self.MODEL_FILE]

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any], threads: int = 1) -> LinearScorer:
        data = json.loads((folder / cls.MODEL_FILE).read_text(encoding="utf-8"))
        mean = data.get("feature_mean")
        return cls(np.asarray(data["coef"]), data["intercept"],
                   None if mean is None else np.asarray(mean))


def column_means(x: Matrix) -> np.ndarray:
    """The mean of each column of a feature matrix, in float64; a sparse one is not densified."""
    n = x.shape[0]
    if n == 0:
        return np.zeros(x.shape[1], dtype=np.float64)
    if sp.issparse(x):
        return np.asarray(x.sum(axis=0, dtype=np.float64)).ravel() / n
    return np.asarray(np.mean(np.asarray(x), axis=0, dtype=np.float64))


# Manifests written before they named their scorer say only the algorithm.
LEGACY: dict[str, type] = {"xgboost": XGBoostScorer, "logreg": LinearScorer}


def legacy_scorer(manifest: dict[str, Any]) -> type:
    return LEGACY[str(manifest["algorithm"])]
