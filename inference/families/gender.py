"""Serving the gender family: raw device records or featurised rows -> label + probability per row
(and, for a model trained with target_precision, the operating decision: audience_label)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from container.mediatypes import CSV
from container.values import identifier
from inference import codecs
from inference.codecs import Inputs, Outputs
from inference.errors import BadInput
from inference.predictors import ModelFiles, OutputSpec
from modelformat import scorers
from modelformat.arrowtypes import arrow_lists
from modelformat.errors import DataError
from modelformat.gender.contributions import Attributions, attributions
from modelformat.gender.features import (
    LIST_FIELDS,
    DevicePipeline,
    NumericPipeline,
    is_raw_frame,
    load_pipeline,
)
from modelformat.gender.operating import KEY as OPERATING_KEY
from modelformat.gender.operating import OperatingPoints
from modelformat.gender.record_rows import RecordRows
from modelformat.gender.scorers import legacy_scorer

SCALAR_FIELDS = ("phone_brand", "device_model")
FEW_RECORDS = 8  # up to this many JSON records are featurised as sent, without a DataFrame
FEW_ROWS = 8  # up to this many scores become labels and rounded probabilities in plain floats
SELECTABLE_OUTPUT = True  # answers in SAGEMAKER_INFERENCE_OUTPUT's keys when it is set
SHORTCUTS = True  # has paths of its own for speed, which MLSHIP_FAST=false turns off


def describe(manifest: dict[str, Any], output_keys: tuple[str, ...] = ()) -> OutputSpec:
    positive = str(manifest["classes"][1]) if len(manifest.get("classes") or ()) == 2 else None
    truths = ("truth", "label", "gender", "target")
    if output_keys:  # AWS's keys: predicted_label is the class, probability P(positive)
        return OutputSpec(label_column="predicted_label" if "predicted_label" in output_keys else None,
                          score_column="probability" if "probability" in output_keys else None,
                          positive_label=positive, truth_columns=truths)
    return OutputSpec(label_column="label",
                      score_column=f"probability_{positive}" if positive is not None else None,
                      positive_label=positive, truth_columns=truths)


class Predictor(ModelFiles):
    """The fitted feature pipeline, then the exported scorer, then the threshold."""

    scalar_fields = frozenset(SCALAR_FIELDS)

    def __init__(self, model_dir: Path, manifest: dict[str, Any], threads: int = 1,
                 name: str | None = None, output_keys: tuple[str, ...] = (), fast: bool = True) -> None:
        super().__init__(model_dir, manifest, name, describe(manifest, output_keys))
        self.scorer = scorers.load(model_dir, manifest, threads, legacy_scorer)
        self.fast = fast
        if not fast and getattr(self.scorer, "forest", None) is not None:
            self.scorer.forest = None  # MLSHIP_FAST off: XGBoost's own predict, no compiled walk
        self.pipeline = load_pipeline(model_dir)
        self.classes = list(manifest["classes"])
        self.threshold = float(manifest.get("threshold", 0.5))
        self.n_features = int(self.pipeline.n_features)
        self.score_column = f"probability_{self.classes[1]}"
        # Thresholds per class (a model trained with target_precision): answers gain audience_label.
        self.operating = OperatingPoints.from_manifest(manifest)
        self.csv_columns = ["label", "probability"]
        if self.operating is not None:
            self.csv_columns.append(OPERATING_KEY)
        # A few raw records straight to the forest's rows, where the scorer can take rows.
        self.record_rows = (RecordRows(self.pipeline) if fast and isinstance(self.pipeline, DevicePipeline)
                            and hasattr(self.scorer, "score_rows") else None)
        self._score_csv = getattr(self.scorer, "score_csv", None)
        self.output_keys = output_keys
        if output_keys:
            self._outputs = self._selected_outputs  # type: ignore[method-assign]

    # --- inputs -> features ---------------------------------------------------------
    def features(self, inputs: Inputs) -> Any:
        if inputs.matrix is not None:
            return self._check_width(inputs.matrix)
        records = inputs.records
        if self.fast and records is not None and len(records) <= FEW_RECORDS \
                and isinstance(self.pipeline, DevicePipeline) and is_raw_frame(set().union(*records)):
            _check_record_values(records)
            matrix = self.pipeline.transform_records(records)
            if matrix is not None:
                return matrix
        table = inputs.table
        assert table is not None
        table = table.set_axis([str(c) for c in table.columns], axis=1)
        if isinstance(self.pipeline, DevicePipeline):
            if is_raw_frame(table.columns):
                _check_record_types(table)
                return self.pipeline.transform(table)
            raise BadInput(
                "Records need device fields (phone_brand, device_model, installed_apps, "
                f"active_apps, app_categories, events...); got: {', '.join(list(table.columns)[:10])}"
            )
        return self._numeric_table(table, self.pipeline)

    def _check_width(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            width = matrix.shape[1] if matrix.ndim == 2 else 0
            raise BadInput(
                f"Each row must have {self.n_features} features; got {width}",
                details={"expected_features": self.n_features, "got": width},
            )
        return matrix

    def _numeric_table(self, table: pd.DataFrame, pipeline: NumericPipeline) -> np.ndarray:
        wanted = pipeline.columns
        missing = [c for c in wanted if c not in table.columns]
        if not missing:
            frame = table[wanted]
        elif not any(c in table.columns for c in wanted) and table.shape[1] == len(wanted):
            frame = table  # unnamed columns in training order
        else:
            raise BadInput(f"Missing feature column(s): {', '.join(missing[:10])}",
                           details={"missing": missing[:50]})
        try:
            return codecs.finite(frame.to_numpy(dtype=np.float32))
        except OverflowError:  # an integer beyond float64 in a JSON record
            raise BadInput(codecs.TOO_LARGE) from None
        except (TypeError, ValueError):
            bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
            raise BadInput(f"Feature column(s) {', '.join(map(str, bad[:5]))} must be numbers"
                           ) from None

    # --- prediction -------------------------------------------------------------------
    def predict(self, inputs: Inputs) -> Outputs:
        try:
            few = self._few_records(inputs)
            if few is not None:
                return self._outputs(few, inputs)
            x = self.features(inputs)
        except DataError as exc:  # a record the pipeline cannot read: the message names it
            raise BadInput(str(exc)) from None
        p = self.scorer.predict_proba(x) if x.shape[0] else np.empty(0)
        return self._outputs(p.tolist() if self.fast and len(p) <= FEW_ROWS else p, inputs)

    def _few_records(self, inputs: Inputs) -> list[float] | None:
        """Probabilities of a few raw JSON records scored as plain rows, or None (the usual path)."""
        records = inputs.records
        record_rows = self.record_rows
        if record_rows is None or not records or len(records) > FEW_RECORDS:
            return None
        rows = record_rows.plain_rows(records)  # the usual records: no checks to make
        if rows is None:
            if not is_raw_frame(set().union(*records)):
                return None
            _check_record_values(records)
            rows = record_rows.rows(records)
        return None if rows is None else self.scorer.score_rows(rows, len(records))

    def explain(self, inputs: Inputs) -> Attributions:
        """Attributions of the records in ``inputs`` (log-odds of the positive class), folded onto
        the raw fields (modelformat/gender/contributions.py); the label they explain is the
        positive class. Only the records asked about are featurised again and attributed."""
        try:
            x = self.features(inputs)
        except DataError as exc:
            raise BadInput(str(exc)) from None
        return attributions(self.pipeline, self.scorer, x)

    @property
    def explained_label(self) -> str:
        return str(self.classes[1])

    def transform(self, body: bytes, media_type: str, accept: str) -> tuple[bytes, int] | None:
        """The speed layer's one hook (see ``predictors.Predictor.transform``): a body of plain
        numeric CSV rows read and walked by the scorer straight from its bytes (the compiled
        forest's C parse), its answer encoded as the general path encodes it; None for any other
        body. tests/unit/test_csv_shortcut.py compares the bytes with the general path's."""
        score_csv = self._score_csv
        if media_type != CSV or score_csv is None:
            return None
        p = score_csv(body)
        if p is None:
            return None
        outputs = self._outputs(p, None)
        return codecs.encode(outputs, accept)[0], outputs.n_rows

    def _outputs(self, p: list[float] | np.ndarray, inputs: Inputs | None) -> Outputs:
        neg, pos = self.classes
        if isinstance(p, list) and len(p) <= FEW_ROWS and all(map(math.isfinite, p)):
            label_values, confidence, scores = few_scores(p, self.threshold, neg, pos)
        else:
            p = np.asarray(p, dtype=np.float64)
            positive = p >= self.threshold
            label_values = [pos if v else neg for v in positive.tolist()]
            confidence = np.round(np.where(positive, p, 1.0 - p), 6).tolist()
            scores = np.round(p, 6).tolist()
        columns = _ids(inputs)
        columns["label"] = label_values
        columns["probability"] = confidence
        columns[self.score_column] = scores
        if self.operating is not None:
            columns[OPERATING_KEY] = self.operating.labels(p)
        return Outputs(columns=columns, csv_columns=self.csv_columns)

    def _selected_outputs(self, p: list[float] | np.ndarray, inputs: Inputs | None) -> Outputs:
        """``_outputs`` in SAGEMAKER_INFERENCE_OUTPUT's keys, in their order, with the meaning AWS's
        XGBoost container gives them for binary:logistic (its serve_utils.get_selected_predictions):
        predicted_label the class (our threshold, as ``label``), labels the classes (negative,
        positive), probability P(positive), probabilities [P(negative), P(positive)], raw_score and
        raw_scores the model's output, which for binary:logistic is that probability (AWS's too, not
        the margin). Rounded to 6 decimals like the default answer; device_id kept in front; a model
        with operating thresholds adds audience_label after the keys asked for (AWS has no such key,
        and the CSV columns of AWS's keys keep their positions)."""
        neg, pos = self.classes
        q = np.asarray(p, dtype=np.float64)
        positive = (q >= self.threshold).tolist()
        score = np.round(q, 6).tolist()
        pairs = [list(pair) for pair in zip(np.round(1.0 - q, 6).tolist(), score, strict=True)]
        values: dict[str, Any] = {
            "predicted_label": lambda: [pos if v else neg for v in positive],
            "labels": lambda: [[neg, pos] for _ in positive],
            "probability": lambda: score,
            "probabilities": lambda: pairs,
            "raw_score": lambda: list(score),
            "raw_scores": lambda: [list(pair) for pair in pairs],
        }
        columns = _ids(inputs)
        for key in self.output_keys:
            columns[key] = values[key]()
        keys = list(self.output_keys)
        if self.operating is not None:
            columns[OPERATING_KEY] = self.operating.labels(p)
            keys.append(OPERATING_KEY)
        return Outputs(columns=columns, csv_columns=keys, aws_cells=True)

    def warmup(self) -> None:
        path = self.model_dir / "warmup.json"
        records = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
        if not records:
            raise RuntimeError("model directory has no warmup.json example to test with")
        inputs = Inputs(table=pd.DataFrame.from_records(records))
        out = self.predict(inputs)
        probs = np.asarray(out.columns["probability"] if not self.output_keys
                           else self.scorer.predict_proba(self.features(inputs)), dtype=float)
        if not np.all(np.isfinite(probs)):
            raise RuntimeError("warm-up prediction produced non-finite probabilities")


def _ids(inputs: Inputs | None) -> dict[str, Any]:
    """The answer's first column: each record's device_id, where the records carried one."""
    records = inputs.records if inputs is not None else None
    if records is not None:
        if any("device_id" in r for r in records):
            return {"device_id": [identifier(r.get("device_id", np.nan)) for r in records]}
    elif inputs is not None and inputs.table is not None and "device_id" in inputs.table.columns:
        return {"device_id": [identifier(v) for v in inputs.table["device_id"].tolist()]}
    return {}


def round6(v: float) -> float:
    """``np.round(v, 6)`` of a float64 in plain Python: scale, round half to even, divide, so both
    paths give the same bits (tests/unit/test_forest.py checks it through few_scores)."""
    return round(v * 1e6) / 1e6


def few_scores(p: list[float], threshold: float, neg: Any, pos: Any
               ) -> tuple[list[Any], list[float], list[float]]:
    """Labels, confidences and scores of a few finite probabilities in plain floats (``round6``):
    for one row the NumPy calls cost more than the model."""
    labels, confidence, scores = [], [], []
    for v in p:
        positive = v >= threshold
        labels.append(pos if positive else neg)
        confidence.append(round6(v if positive else 1.0 - v))
        scores.append(round6(v))
    return labels, confidence, scores


def _check_record_values(records: list[dict[str, Any]]) -> None:
    """_check_record_types for records still as sent."""
    for column in LIST_FIELDS:
        for number, record in enumerate(records, start=1):
            if isinstance(record.get(column), dict):
                raise BadInput(f"Record {number}: '{column}' must be a list or a '|'-joined string, "
                               "not an object")
    for column in SCALAR_FIELDS:
        for number, record in enumerate(records, start=1):
            if isinstance(record.get(column), (dict, list)):
                raise BadInput(f"Record {number}: '{column}' must be a string")


def _check_record_types(table: pd.DataFrame) -> None:
    # set(map(type, ...)) runs in C; the per-record loop only runs to name a record that is wrong.
    for column in LIST_FIELDS:
        if column in table.columns and not arrow_lists(table[column].dtype):  # lists of plain values
            values = table[column].tolist()
            if dict in set(map(type, values)):
                number = next(n for n, v in enumerate(values, start=1) if isinstance(v, dict))
                raise BadInput(f"Record {number}: '{column}' must be a list or a '|'-joined string, "
                               "not an object")
    for column in SCALAR_FIELDS:
        if column in table.columns:
            values = table[column].tolist()
            if set(map(type, values)) & {dict, list}:
                number = next(n for n, v in enumerate(values, start=1) if isinstance(v, (dict, list)))
                raise BadInput(f"Record {number}: '{column}' must be a string")
