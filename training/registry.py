"""Algorithm name -> class, for every model family the image carries: the one door.

The `algorithm` hyperparameter picks one (its choices come from here); the trained model's
manifest names the exported scorer serving loads, so adding an algorithm means writing its
class and registering it: no contract code changes. Classes are imported lazily so that
`train` for a gender model never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from training.errors import UserError
from training.hyperparameters import Hyperparameter as HP


@dataclass(frozen=True)
class Registered:
    family: str
    module: str
    cls: str


ALGORITHMS: dict[str, Registered] = {
    "xgboost": Registered("gender", "training.gender.algorithms", "XGBoostClassifier"),
    "logreg": Registered("gender", "training.gender.algorithms", "LogisticRegressionClassifier"),
    "popularity": Registered("propensity", "training.propensity.algorithms", "Popularity"),
    "mf": Registered("propensity", "training.propensity.algorithms", "MatrixFactorisation"),
    "gmf": Registered("propensity", "training.propensity.algorithms", "GMF"),
    "mlp": Registered("propensity", "training.propensity.algorithms", "MLP"),
    "neumf": Registered("propensity", "training.propensity.algorithms", "NeuMF"),
    "wide_deep": Registered("propensity", "training.propensity.algorithms", "WideDeep"),
}
DEFAULT_ALGORITHM = "xgboost"


def register(name: str, module: str, cls: str, family: str) -> None:
    """Add an algorithm (a class with the family's interface) under ``name``."""
    ALGORITHMS[name] = Registered(family, module, cls)


def get(name: str) -> Any:
    """The algorithm class registered under ``name``."""
    if name not in ALGORITHMS:
        known = ", ".join(sorted(ALGORITHMS))
        raise UserError(f"Unknown algorithm '{name}'; choose one of: {known}")
    entry = ALGORITHMS[name]
    return getattr(importlib.import_module(entry.module), entry.cls)


def names(family: str) -> tuple[str, ...]:
    """The algorithms of a family, in registration order."""
    return tuple(n for n, e in ALGORITHMS.items() if e.family == family)


def algorithm_hyperparameter(family: str, default: str, doc: str) -> HP:
    """The family's `algorithm` hyperparameter, its choices read now (plug-ins included)."""
    return HP("algorithm", str, default, doc, choices=names(family))
