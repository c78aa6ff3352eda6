"""Algorithm name -> class, for every model family the image carries.

The `algorithm` hyperparameter picks one; serving reads the name from the model manifest.
Adding an algorithm means writing its class and one line here: no contract code changes.
Classes are imported lazily so that `serve` for a gender model never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from training.errors import UserError

ALGORITHMS: dict[str, tuple[str, str]] = {
    # name: (module, class)
    "xgboost": ("training.gender.algorithms", "XGBoostClassifier"),
    "logreg": ("training.gender.algorithms", "LogisticRegressionClassifier"),
    "popularity": ("training.propensity.task", "Popularity"),
    "mf": ("training.propensity.task", "MatrixFactorisation"),
    "gmf": ("training.propensity.task", "GMF"),
    "mlp": ("training.propensity.task", "MLP"),
    "neumf": ("training.propensity.task", "NeuMF"),
    "wide_deep": ("training.propensity.task", "WideDeep"),
}
DEFAULT_ALGORITHM = "xgboost"


def register(name: str, module: str, cls: str) -> None:
    ALGORITHMS[name] = (module, cls)


def get(name: str) -> Any:
    """The algorithm class registered under ``name``."""
    if name not in ALGORITHMS:
        known = ", ".join(sorted(ALGORITHMS))
        raise UserError(f"Unknown algorithm '{name}'; choose one of: {known}")
    module, cls = ALGORITHMS[name]
    return getattr(importlib.import_module(module), cls)


def family_of(name: str) -> str:
    return str(get(name).family)
