"""The recorded form of a prediction: one row per input record, whatever the model family.

A row keeps the input's hash (so two model versions are compared on the same inputs), the
predicted label and score as the family's ``OutputSpec`` names them, the whole output, the
known truth when the input carried one, the latency, and the record's explanation when one was
asked for (``inference.explanations.per_record``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from inference.predictors import OutputSpec

GENERIC = OutputSpec()


def input_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def result_rows(records: list[dict[str, Any]], predictions: list[dict[str, Any]], start: int,
                latency_ms: float, truths: list[Any] | None = None, spec: OutputSpec = GENERIC,
                explanations: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The stored rows of ``predictions`` (``Outputs.rows()``), one per input record."""
    out = []
    label_key, score_key = spec.label_column, spec.score_column
    for n, (rec, row) in enumerate(zip(records, predictions, strict=True)):
        label = row.get(label_key) if label_key else None
        truth = None if truths is None else truths[n]
        out.append({"row_index": start + n, "input_sha256": input_hash(rec),
                    "label": None if label is None else str(label),
                    "score": _number(row.get(score_key)) if score_key else None,
                    "output": json.dumps(row, default=str),
                    "truth": None if truth is None or (isinstance(truth, float) and np.isnan(truth))
                    else str(truth), "latency_ms": latency_ms,
                    "explanation": None if explanations is None else json.dumps(explanations[n])})
    return out


def answer_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as ``check`` answers it: the model's output, with its explanation if recorded."""
    out: dict[str, Any] = json.loads(row["output"])
    if row.get("explanation"):
        out["explanation"] = json.loads(row["explanation"])
    return out


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A chunk's rows as the JSON records whose hashes are stored."""
    return list(json.loads(frame.to_json(orient="records", force_ascii=False)))


def split_truth(frame: pd.DataFrame, spec: OutputSpec) -> tuple[pd.DataFrame, list[Any] | None]:
    """The inputs without their truth column (the first of ``spec.truth_columns`` present)."""
    for column in spec.truth_columns:
        if column in frame.columns:
            return frame.drop(columns=[column]), frame[column].tolist()
    return frame, None
