"""Which exported scorer reads a model directory: the manifest names it, this module loads it.

`train` writes ``"scorer": "<module>:<Class>"`` into model.json from the algorithm class it ran,
so a new algorithm brings its scorer with it and serving needs no table of algorithm names.
Only classes of packages listed in ``SCORER_PACKAGES`` are imported: a model directory cannot
make `serve` import arbitrary code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCORER_PACKAGES: list[str] = ["modelformat."]


def reference(cls: type) -> str:
    """The manifest's name for a scorer class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def allow_package(prefix: str) -> None:
    """Let scorers of another package be loaded (a plug-in algorithm outside this repository)."""
    if prefix not in SCORER_PACKAGES:
        SCORER_PACKAGES.append(prefix)


def scorer_class(manifest: dict[str, Any], legacy: Callable[[dict[str, Any]], type] | None = None) -> Any:
    """The class the manifest names; ``legacy``: the family's answer for manifests written before
    they named their scorer (models trained by earlier releases keep serving)."""
    ref = manifest.get("scorer")
    if ref is None and legacy is not None:
        try:
            return legacy(manifest)
        except KeyError:
            pass
    if not isinstance(ref, str) or ":" not in ref:
        raise ValueError("model.json names no scorer ('scorer': '<module>:<Class>'); retrain the model "
                         "with this image")
    module, _, name = ref.partition(":")
    if not any(module.startswith(p) or f"{module}." == p for p in SCORER_PACKAGES):
        raise ValueError(f"model.json names scorer {ref!r} outside the allowed packages "
                         f"({', '.join(SCORER_PACKAGES)})")
    return getattr(importlib.import_module(module), name)


def load(model_dir: Path, manifest: dict[str, Any], threads: int = 1,
         legacy: Callable[[dict[str, Any]], type] | None = None) -> Any:
    """The scorer object of a model directory (its protocol is the family's)."""
    return scorer_class(manifest, legacy).load(model_dir, manifest, threads)
