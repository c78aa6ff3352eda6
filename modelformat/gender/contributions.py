"""Per-record attributions of the gender scorers, folded onto the raw fields a caller sends.

Exact for both scorers, in log-odds of the positive class (the margin): XGBoost's own TreeSHAP
(``pred_contribs``) and, for logistic regression, coefficient x feature value with the intercept
as the bias. A record's attributions plus the bias equal its margin. Folding sums each raw field's
feature columns (a field's one-hot or bag columns, its dense summaries): a group's sum is what the
field contributes under these attributions, not the Shapley value of the group as one player.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from modelformat.gender.features import DENSE_NAMES, DevicePipeline, NumericPipeline

Pipeline = DevicePipeline | NumericPipeline

# Which raw field each dense feature summarises (active_ratio reads both app lists: active_apps).
_DENSE_FIELDS = {
    "n_events_log": "event_timestamps", "weekend_share": "event_timestamps",
    **{f"hour_{h:02d}": "event_timestamps" for h in range(24)},
    "geo_share": "event_locations", "lat_mean": "event_locations", "lon_mean": "event_locations",
    "lat_std": "event_locations", "lon_std": "event_locations", "n_places_log": "event_locations",
    "n_installed_log": "installed_apps", "n_active_log": "active_apps", "active_ratio": "active_apps",
    "n_categories_log": "app_categories",
}
FIELDS = ("phone_brand", "device_model", "installed_apps", "active_apps", "app_categories",
          "event_timestamps", "event_locations")
_PREFIXES = {"brand": "phone_brand", "model": "device_model", "installed": "installed_apps",
             "active": "active_apps", "category": "app_categories"}

XGBOOST_METHOD = "xgboost pred_contribs (TreeSHAP), folded by raw field"
LINEAR_METHOD = ("logistic regression coef x value with the intercept as bias (the training means of "
                 "the one-hot and bag columns are not stored, so those are against absence; the dense "
                 "columns are standardised, training mean 0), folded by raw field")


@dataclass(frozen=True)
class Attributions:
    """``values[i, j]``: what field ``headers[j]`` adds to record i's margin; ``bias`` + a row's sum
    is that record's margin (``margins``), log-odds of the positive class."""

    headers: list[str]
    values: np.ndarray
    bias: float
    margins: np.ndarray
    method: str


def field_groups(pipeline: Pipeline) -> tuple[list[str], np.ndarray]:
    """The raw fields, and the index of the field each feature column belongs to."""
    names = pipeline.feature_names
    if isinstance(pipeline, NumericPipeline):
        return list(names), np.arange(len(names))
    index = {f: i for i, f in enumerate(FIELDS)}
    groups = np.empty(len(names), dtype=np.int64)
    for j, name in enumerate(names):
        if j < len(DENSE_NAMES):
            groups[j] = index[_DENSE_FIELDS[name]]
        else:
            groups[j] = index[_PREFIXES[name.split("=", 1)[0]]]
    return list(FIELDS), groups


def feature_contributions(scorer: Any, x: Any) -> tuple[np.ndarray, float, str]:
    """Per feature column contributions (n x features, float64), the bias and the method name."""
    booster = getattr(scorer, "booster", None)
    if booster is not None:
        import xgboost as xgb

        contribs = np.asarray(booster.predict(xgb.DMatrix(x), pred_contribs=True, validate_features=False),
                              dtype=np.float64)
        bias = float(contribs[0, -1]) if len(contribs) else 0.0
        return contribs[:, :-1], bias, XGBOOST_METHOD
    coef = getattr(scorer, "coef", None)
    if coef is not None:
        matrix = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)
        values = sp.csr_matrix(matrix).multiply(np.asarray(coef, dtype=np.float64)[None, :]).toarray()
        return np.asarray(values, dtype=np.float64), float(scorer.intercept), LINEAR_METHOD
    raise TypeError(f"{type(scorer).__name__} gives no attributions")


CHUNK = 256  # rows attributed at a time: XGBoost's contributions are dense (rows x features)


def attributions(pipeline: Pipeline, scorer: Any, x: Any) -> Attributions:
    """The attributions of feature rows ``x`` (as the pipeline builds them), folded by raw field,
    ``CHUNK`` rows at a time so that memory stays bounded however many records are explained."""
    headers, groups = field_groups(pipeline)
    fold = sp.csr_matrix((np.ones(len(groups)), (np.arange(len(groups)), groups)),
                         shape=(len(groups), len(headers)))
    parts, bias, method = [], 0.0, ""
    for start in range(0, x.shape[0], CHUNK):
        contribs, bias, method = feature_contributions(scorer, x[start:start + CHUNK])
        parts.append(np.asarray(fold.T @ contribs.T, dtype=np.float64).T)
    folded = np.vstack(parts) if parts else np.zeros((0, len(headers)))
    return Attributions(headers, folded, bias, folded.sum(axis=1) + bias, method)
