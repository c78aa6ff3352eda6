"""Per-record attributions of the gender scorers, folded onto the raw fields a caller sends.

Exact for both scorers, in log-odds of the positive class (the margin): XGBoost's own TreeSHAP
(``pred_contribs``) and, for logistic regression, coefficient x (feature value - its training mean)
with the margin of the training means as the bias (a model saved before the means were stored:
coefficient x value, the intercept as the bias). A record's attributions plus the bias equal its
margin. Folding sums each raw field's feature columns (a field's one-hot or bag columns, its dense
summaries): a group's sum is what the field contributes under these attributions, not the Shapley
value of the group as one player. ``importance`` averages them over many rows (global importance).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
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

# In a numeric-input model's directory (named by the manifest's "explainer_baseline"): one header-less CSV
# row of the training means of its input columns, the baseline SageMaker Clarify's online explainer
# perturbs records towards. Device-record models have none: Clarify cannot perturb list fields.
EXPLAINER_BASELINE = "explainer-baseline.csv"

XGBOOST_METHOD = "xgboost pred_contribs (TreeSHAP), folded by raw field"
LINEAR_METHOD = ("logistic regression coef x (value - training mean), the bias the margin of the mean "
                 "training row (intercept + coef x training mean), folded by raw field")
# A model directory from before the training means were stored: against 0.
LINEAR_METHOD_NO_MEANS = ("logistic regression coef x value with the intercept as bias (the model stores no "
                          "training means, so the one-hot and bag columns are against absence; the dense "
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
    headers, groups = _groups(isinstance(pipeline, NumericPipeline), tuple(pipeline.feature_names))
    return list(headers), groups


@functools.lru_cache(maxsize=16)  # a model's columns are fixed: 0.5 ms of a 1-record explanation
def _groups(numeric: bool, names: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    if numeric:
        return names, np.arange(len(names))
    index = {f: i for i, f in enumerate(FIELDS)}
    groups = np.empty(len(names), dtype=np.int64)
    for j, name in enumerate(names):
        if j < len(DENSE_NAMES):
            groups[j] = index[_DENSE_FIELDS[name]]
        else:
            groups[j] = index[_PREFIXES[name.split("=", 1)[0]]]
    groups.flags.writeable = False  # shared by every call
    return FIELDS, groups


def feature_contributions(scorer: Any, x: Any) -> tuple[np.ndarray, float, str]:
    """Per feature column contributions (n x features, float64), the bias and the method name."""
    booster = getattr(scorer, "booster", None)
    if booster is not None:
        import xgboost as xgb

        # nthread=1: the DMatrix of a few rows is built in ~0.1 ms on one thread; XGBoost's default
        # (every core) spent 6-10 ms of a 1-record explained request waking threads on a busy machine.
        dmatrix = xgb.DMatrix(x, nthread=1)
        contribs = np.asarray(booster.predict(dmatrix, pred_contribs=True, validate_features=False),
                              dtype=np.float64)
        bias = float(contribs[0, -1]) if len(contribs) else 0.0
        return contribs[:, :-1], bias, XGBOOST_METHOD
    linear = _linear(scorer)
    if linear is not None:
        coef, at_mean, bias, method = linear
        matrix = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)
        values = np.asarray(sp.csr_matrix(matrix).multiply(coef[None, :]).toarray(), dtype=np.float64)
        return values - at_mean[None, :], bias, method
    raise TypeError(f"{type(scorer).__name__} gives no attributions")


def _linear(scorer: Any) -> tuple[np.ndarray, np.ndarray, float, str] | None:
    """A linear scorer's coefficients, coef x training mean (what each column counts against), the
    bias and the method; None for any other scorer. Without stored means they count against 0."""
    coef = getattr(scorer, "coef", None)
    if coef is None or getattr(scorer, "booster", None) is not None:
        return None
    coef = np.asarray(coef, dtype=np.float64)
    mean = getattr(scorer, "feature_mean", None)
    if mean is None:
        return coef, np.zeros_like(coef), float(scorer.intercept), LINEAR_METHOD_NO_MEANS
    at_mean = coef * np.asarray(mean, dtype=np.float64)
    return coef, at_mean, float(scorer.intercept) + float(at_mean.sum()), LINEAR_METHOD


def explainable(scorer: Any) -> bool:
    """Whether ``feature_contributions`` can attribute this scorer's predictions."""
    return getattr(scorer, "booster", None) is not None or getattr(scorer, "coef", None) is not None


CHUNK = 256  # rows attributed at a time: XGBoost's contributions are dense (rows x features)


def _folded(pipeline: Pipeline, scorer: Any, x: Any) -> Iterator[tuple[np.ndarray, float, str]]:
    """Each ``CHUNK`` rows' attributions folded by raw field, with the bias and the method."""
    headers, groups = field_groups(pipeline)
    fold = sp.csr_matrix((np.ones(len(groups)), (np.arange(len(groups)), groups)),
                         shape=(len(groups), len(headers)))
    linear = _linear(scorer)
    if linear is not None:  # a field's sum is x @ (its columns' coefficients): no dense rows x features
        coef, at_mean, bias, method = linear
        weights = sp.csr_matrix(fold.multiply(coef[:, None]))
        offset = np.asarray(fold.T @ at_mean, dtype=np.float64).ravel()
        for start in range(0, x.shape[0], CHUNK):
            part = sp.csr_matrix(x[start:start + CHUNK], dtype=np.float64) @ weights
            yield np.asarray(part.toarray(), dtype=np.float64) - offset[None, :], bias, method
        return
    for start in range(0, x.shape[0], CHUNK):
        contribs, bias, method = feature_contributions(scorer, x[start:start + CHUNK])
        yield np.asarray(fold.T @ contribs.T, dtype=np.float64).T, bias, method


def attributions(pipeline: Pipeline, scorer: Any, x: Any) -> Attributions:
    """The attributions of feature rows ``x`` (as the pipeline builds them), folded by raw field,
    ``CHUNK`` rows at a time so that memory stays bounded however many records are explained."""
    headers, _ = field_groups(pipeline)
    parts, bias, method = [], 0.0, ""
    for part, chunk_bias, chunk_method in _folded(pipeline, scorer, x):
        parts.append(part)
        bias, method = chunk_bias, chunk_method
    folded = np.vstack(parts) if parts else np.zeros((0, len(headers)))
    return Attributions(headers, folded, bias, folded.sum(axis=1) + bias, method)


@dataclass(frozen=True)
class Importance:
    """Per raw field over a set of rows: the mean |attribution| and the mean signed attribution."""

    headers: list[str]
    mean_abs: np.ndarray
    mean: np.ndarray
    rows: int
    bias: float
    method: str


def importance(pipeline: Pipeline, scorer: Any, x: Any) -> Importance:
    """``attributions`` of feature rows ``x`` summed up per raw field, ``CHUNK`` rows at a time
    without keeping them: how much each field moves predictions on these rows, and which way."""
    headers, _ = field_groups(pipeline)
    total_abs, total = np.zeros(len(headers)), np.zeros(len(headers))
    bias, method = 0.0, ""
    for part, chunk_bias, chunk_method in _folded(pipeline, scorer, x):
        total_abs += np.abs(part).sum(axis=0)
        total += part.sum(axis=0)
        bias, method = chunk_bias, chunk_method
    n = int(x.shape[0])
    return Importance(headers, total_abs / max(n, 1), total / max(n, 1), n, bias, method)
