"""Comparing two recorded predictions on the inputs they share: pure functions over stored rows.

Rows are matched by input hash, so an A/B pair, a shadow run or two batch jobs over the same
file compare row for row: label agreement and confusion, score deltas and their histogram,
quality against known truth, latency per row; for models with an operating decision (the gender
family's ``audience_label``), each side's coverage per class at its own thresholds and, where truth
was given, the precision it achieved and its precision/coverage curve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

# The key of a family's operating decision in each recorded output (modelformat/gender/operating.py
# names it for the gender family): a class label, or the empty string for "no label".
DECISION_KEY = "audience_label"
CURVE_THRESHOLDS = np.round(np.arange(0.50, 1.0, 0.01), 2)


def _side(prediction: dict[str, Any]) -> dict[str, Any]:
    return {"prediction_id": prediction["id"],
            "model": {"name": prediction["model_name"], "version": prediction["model_version"]}}


def compare(a: dict[str, Any], b: dict[str, Any], rows_a: list[dict[str, Any]],
            rows_b: list[dict[str, Any]], bins: int = 20, positive: str | None = None,
            points: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None)
            ) -> dict[str, Any]:
    """``a``/``b``: the predictions; ``rows_*``: their stored rows; ``positive``: the truth value that
    counts as positive for ROC AUC (default: the second class in sort order); ``points``: each
    side's model's ``operating_points`` (its manifest's), whose targets and thresholds are shown
    beside the coverage measured on the rows."""
    by_a = {r["input_sha256"]: r for r in rows_a}
    by_b = {r["input_sha256"]: r for r in rows_b}
    common = sorted(set(by_a) & set(by_b))
    result: dict[str, Any] = {
        "a": _side(a), "b": _side(b),
        "rows_compared": len(common), "rows_only_in_a": len(by_a) - len(common),
        "rows_only_in_b": len(by_b) - len(common),
    }
    if not common:
        return result
    la = [by_a[h]["label"] for h in common]
    lb = [by_b[h]["label"] for h in common]
    if any(v is not None for v in la):
        result["agreement_rate"] = float(np.mean([x == y for x, y in zip(la, lb, strict=True)]))
        confusion: dict[str, dict[str, int]] = {}
        for x, y in zip(la, lb, strict=True):
            confusion.setdefault(str(x), {}).setdefault(str(y), 0)
            confusion[str(x)][str(y)] += 1
        result["label_confusion"] = confusion
    sa_ = np.array([by_a[h]["score"] if by_a[h]["score"] is not None else np.nan for h in common])
    sb_ = np.array([by_b[h]["score"] if by_b[h]["score"] is not None else np.nan for h in common])
    ok = np.isfinite(sa_) & np.isfinite(sb_)
    if ok.any():
        delta = sb_[ok] - sa_[ok]
        counts, edges = np.histogram(delta, bins=bins)
        result["score_delta"] = {
            "mean": float(delta.mean()), "mean_abs": float(np.abs(delta).mean()),
            "max_abs": float(np.abs(delta).max()), "histogram": {"edges": edges.tolist(),
                                                                  "counts": counts.tolist()}}
        result["scores"] = {"a": sa_[ok][:2000].tolist(), "b": sb_[ok][:2000].tolist()}
    truths = [by_a[h]["truth"] for h in common]
    if any(t is not None for t in truths):
        result["quality"] = {side: quality(truths, [rows[h] for h in common], positive)
                             for side, rows in (("a", by_a), ("b", by_b))}
    decided = operating(truths, [by_a[h] for h in common], [by_b[h] for h in common], positive, points)
    if decided is not None:
        result["operating"] = decided
    la_ms = [by_a[h]["latency_ms"] or 0 for h in common]
    lb_ms = [by_b[h]["latency_ms"] or 0 for h in common]
    result["latency_ms_per_row"] = {"a": float(np.mean(la_ms)), "b": float(np.mean(lb_ms))}
    return result


def quality(truths: list[Any], rows: list[dict[str, Any]], positive: str | None = None) -> dict[str, float]:
    """Accuracy of the recorded labels and, for two classes, ROC AUC of the recorded scores."""
    known = [(t, r) for t, r in zip(truths, rows, strict=True) if t is not None]
    acc = float(np.mean([str(t) == str(r["label"]) for t, r in known])) if known else float("nan")
    out = {"labelled_rows": len(known), "accuracy": acc}
    scored = [(t, r["score"]) for t, r in known if r["score"] is not None]
    classes = sorted({str(t) for t, _ in scored})
    if len(classes) == 2:
        from sklearn.metrics import roc_auc_score

        pos = positive if positive is not None else classes[1]
        y = [1 if str(t) == pos else 0 for t, _ in scored]
        if 0 < sum(y) < len(y):
            out["roc_auc"] = float(roc_auc_score(y, [s for _, s in scored]))
    return out


def _decisions(rows: list[dict[str, Any]]) -> list[str] | None:
    """Each row's recorded operating decision, or None when the model gives none."""
    found = []
    for row in rows:
        output = json.loads(row["output"]) if row.get("output") else {}
        if DECISION_KEY not in output:
            return None
        value = output[DECISION_KEY]
        found.append("" if value is None else str(value))
    return found


def operating(truths: list[Any], rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]],
              positive: str | None = None,
              points: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None)
              ) -> dict[str, Any] | None:
    """Per side: the share of the compared rows labelled with each class by its own thresholds
    (coverage at its target) and left unlabelled; with truth, the precision each class's labels
    achieved and the precision/coverage curve of the recorded scores. None when neither side's
    model gives an operating decision."""
    sides = {"a": (rows_a, _decisions(rows_a), points[0]), "b": (rows_b, _decisions(rows_b), points[1])}
    if all(d is None for _, d, _ in sides.values()):
        return None
    known = [t for t in truths if t is not None]
    classes = sorted({str(t) for t in known} | {d for _, ds, _ in sides.values() for d in ds or () if d},
                     key=str)
    out: dict[str, Any] = {"key": DECISION_KEY, "classes": classes}
    for side, (rows, decisions, declared) in sides.items():
        if decisions is None:
            out[side] = None
            continue
        n = len(decisions)
        entry: dict[str, Any] = {
            "rows": n, "coverage": {c: sum(d == c for d in decisions) / n for c in classes},
            "unlabelled": sum(d == "" for d in decisions) / n}
        if isinstance(declared, Mapping):
            entry["target_precision"] = dict(declared.get("target_precision") or {})
            entry["thresholds"] = dict(declared.get("thresholds") or {})
        if known:
            entry["achieved"] = _achieved(truths, decisions, classes)
            entry["curve"] = _curves(truths, rows, classes, positive)
        out[side] = entry
    return out


def _achieved(truths: list[Any], decisions: list[str], classes: list[str]) -> dict[str, Any]:
    """Of the rows with truth labelled c, how many are c (precision), per class."""
    found: dict[str, Any] = {}
    for c in classes:
        labelled = [str(t) == c for t, d in zip(truths, decisions, strict=True) if t is not None and d == c]
        found[c] = {"labelled": len(labelled), "precision": float(np.mean(labelled)) if labelled else None}
    return found


def _curves(truths: list[Any], rows: list[dict[str, Any]], classes: list[str], positive: str | None
            ) -> dict[str, list[dict[str, float]]]:
    """Precision against coverage per class of two, over the rows with truth, as thresholds on the
    recorded score (P(positive); 1 - it for the other class) move from 0.5 to 0.99."""
    pairs = [(str(t), r["score"]) for t, r in zip(truths, rows, strict=True)
             if t is not None and r.get("score") is not None]
    if len(classes) != 2 or not pairs:
        return {}
    pos = positive if positive in classes else classes[1]
    truth = np.array([t for t, _ in pairs])
    score = np.array([float(s) for _, s in pairs])
    curves: dict[str, list[dict[str, float]]] = {}
    for c in classes:
        prob, leans = (score, score >= 0.5) if c == pos else (1.0 - score, score < 0.5)
        points = []
        for t in CURVE_THRESHOLDS:
            chosen = leans & (prob >= t)
            if chosen.any():
                points.append({"threshold": float(t), "coverage": float(chosen.mean()),
                               "precision": float(np.mean(truth[chosen] == c))})
        curves[c] = points
    return curves
