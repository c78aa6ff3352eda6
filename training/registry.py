"""Algorithm name -> class, for every model family the image carries: the one door.

The `algorithm` hyperparameter picks one (its choices come from here); the trained model's
manifest names the exported scorer serving loads, so adding an algorithm means writing its
class and naming it in its family's declaration (or registering it): no contract code changes.
Classes are imported lazily so that `train` for one family never imports another's libraries.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from training import families
from training.errors import UserError
from training.hyperparameters import Hyperparameter as HP


@dataclass(frozen=True)
class Registered:
    family: str
    module: str
    cls: str


def _declared() -> dict[str, Registered]:
    table: dict[str, Registered] = {}
    for family in families.all_families().values():
        for name, entry in family.algorithms.items():
            module, _, cls = entry.partition(":")
            if name in table:
                raise ValueError(f"algorithm {name!r} is declared by two families: {table[name].family} "
                                 f"and {family.name}")
            table[name] = Registered(family.name, module, cls)
    return table


# What each family declares (training/<family>/family.py), and the plug-ins `register` adds.
ALGORITHMS: dict[str, Registered] = _declared()
DEFAULT_ALGORITHM = families.default().default_algorithm


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
