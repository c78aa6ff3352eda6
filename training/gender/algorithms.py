"""Gender classifiers behind one small interface: fit, then export a scorer.

Each algorithm declares its hyperparameters and the scorer class it exports (in
modelformat.gender.scorers, which is what `serve` loads), and is registered by name in
training.registry; the contract code never imports a concrete class.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from container.values import plain
from modelformat.gender.scorers import LinearScorer, Matrix, XGBoostScorer, column_means
from training.checkpoints import CheckpointStore, StopFlag
from training.errors import UserError
from training.hyperparameters import Hyperparameter as HP

log = logging.getLogger("training.gender")

@dataclass
class FitContext:
    """What a fit may use besides data: the stop flag, checkpoints, metric output."""

    stop: StopFlag
    checkpoints: CheckpointStore | None
    emit: Callable[[dict[str, float], int | str | None], Any]
    threads: int = 2
    seed: int = 0


@dataclass
class FitResult:
    steps_done: int
    steps_planned: int
    stopped_early: bool = False
    resumed_from: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


class GenderAlgorithm(ABC):
    name: ClassVar[str]
    family: ClassVar[str] = "gender"
    hyperparameters: ClassVar[tuple[HP, ...]] = ()
    supports_checkpoints: ClassVar[bool] = False
    scorer_class: ClassVar[type]  # what the model directory is served with

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    @abstractmethod
    def fit(self, x: Matrix, y: np.ndarray, x_val: Matrix | None, y_val: np.ndarray | None,
            ctx: FitContext) -> FitResult: ...

    @abstractmethod
    def scorer(self) -> Any:
        """The fitted model as its exported scorer (``predict_proba`` and ``save``)."""

    def save(self, folder: Path) -> list[str]:
        files: list[str] = self.scorer().save(folder)
        return files


# --------------------------------------------------------------------------- XGBoost
class XGBoostClassifier(GenderAlgorithm):
    """Gradient-boosted trees (binary:logistic) with per-round checkpoints and resume."""

    name = "xgboost"
    supports_checkpoints = True
    scorer_class = XGBoostScorer
    hyperparameters = (
        HP("num_round", int, 200, "Boosting rounds.", min=1, max=100_000, tunable=True),
        HP("max_depth", int, 6, "Maximum tree depth.", min=1, max=20, tunable=True),
        HP("eta", float, 0.1, "Learning rate.", min=1e-4, max=1.0, tunable=True),
        HP("subsample", float, 1.0, "Row subsampling per tree.", min=0.05, max=1.0, tunable=True),
        HP("colsample_bytree", float, 1.0, "Column subsampling per tree.", min=0.05, max=1.0,
           tunable=True),
        HP("min_child_weight", float, 1.0, "Minimum hessian in a leaf.", min=0.0, max=1e4,
           tunable=True),
        HP("lambda", float, 1.0, "L2 regularisation.", min=0.0, max=1e4, tunable=True),
        HP("alpha", float, 0.0, "L1 regularisation.", min=0.0, max=1e4, tunable=True),
        HP("gamma", float, 0.0, "Minimum loss reduction to split.", min=0.0, max=1e4, tunable=True),
        HP("scale_pos_weight", float, 1.0, "Weight of positive examples.", min=1e-3, max=1e3),
        HP("early_stopping_rounds", int, 0, "Stop when validation logloss has not improved for "
           "this many rounds (0 = off).", min=0, max=10_000),
        HP("checkpoint_frequency", int, 10, "Save a checkpoint every N rounds.", min=1, max=10_000),
        HP("log_every", int, 10, "Print a metric line every N rounds.", min=1, max=10_000),
    )

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.booster: Any = None

    def _xgb_params(self, threads: int, seed: int) -> dict[str, Any]:
        p = self.params
        return {
            "objective": "binary:logistic", "eval_metric": ["logloss", "auc"],
            "max_depth": p["max_depth"], "eta": p["eta"], "subsample": p["subsample"],
            "colsample_bytree": p["colsample_bytree"], "min_child_weight": p["min_child_weight"],
            "lambda": p["lambda"], "alpha": p["alpha"], "gamma": p["gamma"],
            "scale_pos_weight": p["scale_pos_weight"], "nthread": threads, "seed": seed,
            "tree_method": "hist",
        }

    def fit(self, x: Matrix, y: np.ndarray, x_val: Matrix | None, y_val: np.ndarray | None,
            ctx: FitContext) -> FitResult:
        import xgboost as xgb

        total = int(self.params["num_round"])
        dtrain = xgb.DMatrix(x, label=y, nthread=ctx.threads)
        evals = [(dtrain, "train")]
        if x_val is not None and y_val is not None:
            evals.append((xgb.DMatrix(x_val, label=y_val, nthread=ctx.threads), "validation"))

        start_model = None
        resumed_from = None
        if ctx.checkpoints is not None:
            latest = ctx.checkpoints.latest()
            if latest is not None:
                start_model = xgb.Booster()
                start_model.load_model(bytearray(latest.path.read_bytes()))
                resumed_from = int(start_model.num_boosted_rounds())
                log.info("resuming from checkpoint %s at round %d of %d",
                         latest.path.name, resumed_from, total)
        done_before = resumed_from or 0
        remaining = max(0, total - done_before)

        outer = self
        state = {"rounds": done_before, "stopped": False}

        class Hooks(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                rnd = done_before + epoch + 1
                state["rounds"] = rnd
                if rnd % outer.params["log_every"] == 0 or rnd == total:
                    values = {f"{d}:{m}": float(v[-1]) for d, ms in evals_log.items()
                              for m, v in ms.items()}
                    ctx.emit(values, rnd)
                stopping = ctx.stop.is_set
                if ctx.checkpoints is not None and (
                    rnd % outer.params["checkpoint_frequency"] == 0 or stopping
                ):
                    ctx.checkpoints.save(rnd, bytes(model.save_raw("ubj")), "ubj",
                                         {"rounds": rnd, "of": total})
                if stopping:
                    state["stopped"] = True
                    log.warning("stopping at round %d of %d (%s)", rnd, total, ctx.stop.signal_name)
                return stopping

        callbacks: list[Any] = [Hooks()]
        if self.params["early_stopping_rounds"] and len(evals) > 1:
            callbacks.insert(0, xgb.callback.EarlyStopping(
                rounds=self.params["early_stopping_rounds"], metric_name="logloss",
                data_name="validation", save_best=True))
        if remaining > 0:
            self.booster = xgb.train(self._xgb_params(ctx.threads, ctx.seed), dtrain,
                                     num_boost_round=remaining, evals=evals, verbose_eval=False,
                                     callbacks=callbacks, xgb_model=start_model)
        else:
            self.booster = start_model
        return FitResult(state["rounds"], total, bool(state["stopped"]), resumed_from,
                         {"best_iteration": getattr(self.booster, "best_iteration", None)})

    def scorer(self) -> XGBoostScorer:
        return XGBoostScorer(self.booster)


# --------------------------------------------------------------------------- logistic regression
class LogisticRegressionClassifier(GenderAlgorithm):
    """scikit-learn logistic regression; saved as coefficients, scored with numpy."""

    name = "logreg"
    scorer_class = LinearScorer
    hyperparameters = (
        HP("C", float, 1.0, "Inverse regularisation strength.", min=1e-6, max=1e6, tunable=True),
        HP("max_iter", int, 1000, "Solver iterations.", min=10, max=100_000),
        HP("solver", str, "lbfgs", "Optimiser.", choices=("lbfgs", "liblinear", "saga")),
        HP("class_weight", str, "none", "'balanced' reweights classes.", choices=("none", "balanced")),
        HP("tol", float, 1e-4, "Stopping tolerance.", min=1e-10, max=1.0),
    )

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.coef: np.ndarray | None = None
        self.intercept = 0.0
        self.mean: np.ndarray | None = None  # each feature column's training mean, for explanations

    def fit(self, x: Matrix, y: np.ndarray, x_val: Matrix | None, y_val: np.ndarray | None,
            ctx: FitContext) -> FitResult:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        p = self.params
        model = LogisticRegression(
            C=p["C"], max_iter=p["max_iter"], solver=p["solver"], tol=p["tol"],
            class_weight=None if p["class_weight"] == "none" else "balanced",
            random_state=ctx.seed,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        if not converged:
            log.warning("logistic regression did not converge in %d iterations; raise max_iter",
                        p["max_iter"])
        self.coef = np.asarray(model.coef_[0], dtype=np.float64)
        self.intercept = float(model.intercept_[0])
        self.mean = column_means(x)
        iters = int(np.max(model.n_iter_))
        return FitResult(iters, p["max_iter"], False, None, {"converged": converged})

    def scorer(self) -> LinearScorer:
        assert self.coef is not None
        return LinearScorer(self.coef, self.intercept, self.mean)


def check_binary(y_raw: Any, positive: Any) -> tuple[list[Any], np.ndarray]:
    """Classes (negative, positive) and 0/1 labels; the gender model is binary."""
    values = sorted({plain(v) for v in y_raw}, key=str)
    if len(values) != 2:
        shown = ", ".join(repr(v) for v in values[:5])
        raise UserError(
            f"The label column must hold exactly 2 classes for the gender model; found "
            f"{len(values)}: {shown}"
        )
    if positive is None or positive == "":
        pos = values[1]
    else:
        matches = [v for v in values if str(v) == str(positive)]
        if not matches:
            raise UserError(f"positive_class {positive!r} is not one of the labels {values}")
        pos = matches[0]
    neg = values[0] if values[1] == pos else values[1]
    y = np.fromiter((1 if str(plain(v)) == str(pos) else 0 for v in y_raw), dtype=np.int32)
    return [neg, pos], y

