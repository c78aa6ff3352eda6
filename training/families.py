"""Every model family, each declared once in its own package: ``training/<family>/family.py``
holds ``FAMILY = Family(...)``, and this module finds them by scanning the ``training`` package.

A declaration says what the generic code would otherwise have to know by name: the family's
algorithms (the `algorithm` hyperparameter's registry), the metrics `train` prints for HPO, the
synthetic data CI trains on without a data set, the hyperparameters CI trains with, the floors
the gate holds it to, and the README tables it documents. `train` (training/registry.py,
training/metrics.py), the pipeline (jenkins/) and the docs (scripts/docs.py) read it; adding a
family touches only its own folders. The ``training`` package spans every ``training/`` folder on
sys.path (training/__init__.py), so a family can also live outside this checkout.

Entry points are ``"module:attribute"`` strings, imported only when used, so that listing the
families (``python -m jenkins.families``) imports neither pandas nor TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DECLARATION = "family"  # training/<family>/family.py
OBJECTIVES = ("Maximize", "Minimize")


def resolve(entry: str) -> Any:
    """The attribute an entry point ``"module:attribute"`` names."""
    module, sep, attribute = entry.partition(":")
    if not sep or not module or not attribute:
        raise ValueError(f"entry point {entry!r} is not 'module:attribute'")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Family:
    """One model family, as `train`, CI and the docs know it."""

    name: str
    # algorithm name -> "module:Class" (a class with the family's interface), in the order the
    # `algorithm` hyperparameter lists them
    algorithms: Mapping[str, str]
    # the one the family's `algorithm` hyperparameter defaults to
    default_algorithm: str
    # HPO metric -> "Maximize" | "Minimize": what `train` prints as objectives (training/metrics.py)
    objectives: Mapping[str, str]
    # "module:function", function(base: Path, rows: int) -> inputdataconfig.json: writes the channels
    # of a synthetic data set of about ``rows`` records under base/input/data
    synthetic: str
    # manifest metric -> floor: what the gate compares with its floor and with the champion
    gate: Mapping[str, float]
    # printed on the metric lines as well (counts), but no objective
    counts: tuple[str, ...] = ()
    # what CI trains with when it is given no hyperparameters (the image's own defaults otherwise)
    ci_hyperparameters: Mapping[str, str] = field(default_factory=dict)
    # "module:function", function() -> {README section: markdown table}
    docs: str = ""
    # `train` runs this family's default algorithm when a job names no `algorithm`
    trains_by_default: bool = False

    def __post_init__(self) -> None:
        if not self.algorithms or not self.gate:
            raise ValueError(f"family {self.name}: declare at least one algorithm and one gate metric")
        if self.default_algorithm not in self.algorithms:
            raise ValueError(f"family {self.name}: its default algorithm {self.default_algorithm!r} "
                             "is not one of its algorithms")
        wrong = {m: d for m, d in self.objectives.items() if d not in OBJECTIVES}
        if wrong:
            raise ValueError(f"family {self.name}: objectives must be one of {OBJECTIVES}, not {wrong}")

    def lower_is_better(self, metric: str) -> bool | None:
        """Whether a lower value of a manifest metric is better, as its objective says (the
        validation one first); None when the family declares no objective for it."""
        for name in (f"validation:{metric}", f"train:{metric}", metric):
            if name in self.objectives:
                return self.objectives[name] == "Minimize"
        return None

    def write_synthetic(self, base: Path, rows: int) -> dict[str, dict[str, str]]:
        """Write the synthetic channels under ``base``; returns the job's inputdataconfig.json."""
        generator: Callable[[Path, int], dict[str, dict[str, str]]] = resolve(self.synthetic)
        return generator(base, rows)

    def doc_tables(self) -> dict[str, str]:
        return dict(resolve(self.docs)()) if self.docs else {}


def all_families() -> dict[str, Family]:
    """Every declared family by name, in name order: each ``training/<package>/family.py``."""
    import training

    found: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(training.__path__), key=lambda m: m.name):
        module = f"training.{info.name}.{DECLARATION}"
        if not info.ispkg or info.name in found or importlib.util.find_spec(module) is None:
            continue
        family = importlib.import_module(module).FAMILY
        if not isinstance(family, Family) or family.name != info.name:
            raise TypeError(f"{module}.FAMILY must be a Family named {info.name!r}")
        found[family.name] = family
    return found


def get(name: str) -> Family:
    families = all_families()
    if name not in families:
        raise KeyError(f"no family {name!r}; declared: {', '.join(families) or 'none'}")
    return families[name]


def names() -> tuple[str, ...]:
    return tuple(all_families())


def default() -> Family:
    """The family `train` runs when a job names no algorithm (exactly one declares it)."""
    chosen = [f for f in all_families().values() if f.trains_by_default]
    if len(chosen) != 1:
        raise LookupError("exactly one family must declare trains_by_default, not "
                          f"{[f.name for f in chosen] or 'none'}")
    return chosen[0]
