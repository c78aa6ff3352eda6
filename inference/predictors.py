"""The predictor contract every model family implements, and loading one from a model directory.

Pure core: nothing here knows about HTTP. The manifest (model.json) names the family; the
family's module ``inference.families.<family>`` provides ``Predictor`` and ``describe``, so
this generic code holds no family names and a new family is one new module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inference.codecs import Inputs, Outputs
from modelformat import manifest as manifest_io
from modelformat.manifest import model_version

FAMILIES_PACKAGE = "inference.families"


@dataclass(frozen=True)
class OutputSpec:
    """What a family's output columns mean, for recording and comparing predictions.

    ``label_column``: the predicted class (None when the family predicts no class);
    ``score_column``: the number compared across model versions (the positive class's
    probability, a pair's score); ``positive_label``: the truth value that counts as positive
    for ROC AUC; ``truth_columns``: input columns that carry the known answer, in order of
    preference, taken out of the inputs before predicting.
    """

    label_column: str | None = "label"
    score_column: str | None = "score"
    positive_label: str | None = None
    truth_columns: tuple[str, ...] = ("truth",)


class Predictor(Protocol):
    name: str
    version: str
    manifest: dict[str, Any]
    outputs: OutputSpec
    # Fields that are single values in one record: a JSON object holding such a field is one
    # record even when its other fields are lists (not a column-oriented table).
    scalar_fields: frozenset[str]

    def predict(self, inputs: Inputs) -> Outputs: ...

    def transform(self, body: bytes, media_type: str, accept: str) -> tuple[bytes, int] | None:
        """The speed layer's one hook, in the SageMaker inference toolkit's ``transform_fn`` shape:
        the answer to a request body of ``media_type`` in ``accept``, written by the model itself,
        and its row count; or None, and the body takes the general path (decode, predict,
        encode). Both ways give the same bytes (the suites run with MLSHIP_FAST on and off). Not
        called with MLSHIP_FAST off, for a data-capture sample, or for JSON in batch mode."""
        ...

    def warmup(self) -> None: ...


class ModelFiles:
    """What every family's predictor keeps of its model directory: name, version, output meaning."""

    scalar_fields: frozenset[str] = frozenset()

    def __init__(self, model_dir: Path, manifest: dict[str, Any], name: str | None,
                 outputs: OutputSpec) -> None:
        self.model_dir = model_dir
        self.manifest = manifest
        self.name = name or display_name(manifest)
        self.version = str(manifest.get("version") or model_version(model_dir))
        self.outputs = outputs

    def transform(self, body: bytes, media_type: str, accept: str) -> tuple[bytes, int] | None:
        return None  # no shortcut: every body is decoded


def _family(manifest: dict[str, Any]) -> Any:
    family = manifest.get("family")
    if not isinstance(family, str) or not family.isidentifier():
        raise ValueError(f"model.json names an unknown family {family!r}")
    try:
        return importlib.import_module(f"{FAMILIES_PACKAGE}.{family}")
    except ModuleNotFoundError:
        raise ValueError(f"model.json names an unknown family {family!r}") from None


def describe(manifest: dict[str, Any]) -> OutputSpec:
    """The output meaning of a model, from its manifest alone (no model is loaded)."""
    try:
        module = _family(manifest)
    except ValueError:
        return OutputSpec()
    spec: OutputSpec = module.describe(manifest)
    return spec


def load(model_dir: Path, threads: int = 1, name: str | None = None,
         output_keys: tuple[str, ...] = (), fast: bool = True) -> Predictor:
    """The predictor for a model directory made by `train` (not yet warmed up). ``output_keys``
    (SAGEMAKER_INFERENCE_OUTPUT) reach a family that answers in them (``SELECTABLE_OUTPUT``), and
    ``fast=False`` (MLSHIP_FAST) one with speed paths of its own (``SHORTCUTS``); the others
    answer as always."""
    manifest = manifest_io.read(model_dir)
    module = _family(manifest)
    options: dict[str, Any] = {}
    if output_keys and getattr(module, "SELECTABLE_OUTPUT", False):
        options["output_keys"] = output_keys
    if not fast and getattr(module, "SHORTCUTS", False):
        options["fast"] = False
    predictor: Predictor = module.Predictor(model_dir, manifest, threads, name, **options)
    return predictor


def display_name(manifest: dict[str, Any]) -> str:
    return str(manifest.get("model_name") or manifest["algorithm"])
