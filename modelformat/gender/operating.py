"""The operating decision of a gender model: which devices get a class label the business can sell.

A model trained with ``target_precision`` stores one threshold per class in its manifest
(``operating_points.thresholds``, chosen on the validation split by training/gender/operating.py);
serving answers each record's decision under one key, ``audience_label``. The rule, the same in
training (where the thresholds are chosen and measured) and in serving (every door and path):

- the model *leans to* the positive class when P(positive) >= 0.5, to the negative one otherwise
  (as ``label`` does at the default threshold);
- a device is labelled with the class it leans to when that class's probability (P(positive), or
  1 - P(positive) for the negative class, in float64) is >= the class's threshold;
- a class without a threshold (its target was not reached, or none was given) is never labelled,
  and a device that is not labelled answers ``NO_LABEL``, the empty string (no class can be
  blank: `train` refuses blank labels). The label is the class's text, so the column is a string
  column on every door (JSON, CSV, Arrow/Spark).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KEY = "audience_label"
NO_LABEL = ""
MANIFEST_KEY = "operating_points"
LEAN = 0.5  # P(positive) at or above it: the model leans to the positive class


def class_scores(p: np.ndarray, positive: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each device's probability of one class and whether the model leans to that class."""
    p = np.asarray(p, dtype=np.float64)
    if positive:
        return p, p >= LEAN
    return 1.0 - p, p < LEAN


@dataclass(frozen=True)
class OperatingPoints:
    """Thresholds per class (None: never labelled), read from a model's manifest."""

    negative: str
    positive: str
    negative_threshold: float | None
    positive_threshold: float | None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> OperatingPoints | None:
        """None for a model trained without ``target_precision`` (its answers have no operating key)."""
        points = manifest.get(MANIFEST_KEY)
        if not isinstance(points, Mapping):
            return None
        neg, pos = (str(c) for c in manifest["classes"])
        thresholds = points.get("thresholds") or {}
        return cls(neg, pos, _threshold(thresholds.get(neg)), _threshold(thresholds.get(pos)))

    def labels(self, p: Sequence[float] | np.ndarray) -> list[str]:
        """The decision for each probability of the positive class, as plain strings. A list of at
        most a few Python floats is decided in plain Python (one row's NumPy calls cost more than
        its model); both ways compare the same float64 values, so they give the same labels."""
        if isinstance(p, list) and len(p) <= 8:
            return [self._one(v) for v in p]
        q = np.asarray(p, dtype=np.float64)
        pos = q >= LEAN
        if self.positive_threshold is not None:
            pos &= q >= self.positive_threshold
        else:
            pos[:] = False
        neg = q < LEAN
        if self.negative_threshold is not None:
            neg &= (1.0 - q) >= self.negative_threshold
        else:
            neg[:] = False
        p_label, n_label = self.positive, self.negative
        return [p_label if a else (n_label if b else NO_LABEL)
                for a, b in zip(pos.tolist(), neg.tolist(), strict=True)]

    def _one(self, v: float) -> str:
        if v >= LEAN:
            t = self.positive_threshold
            return self.positive if t is not None and v >= t else NO_LABEL
        t = self.negative_threshold
        return self.negative if t is not None and 1.0 - v >= t else NO_LABEL  # NaN: neither


def _threshold(value: Any) -> float | None:
    return None if value is None else float(value)
