"""Comparing two recorded predictions on the inputs they share: pure functions over stored rows.

Rows are matched by input hash, so an A/B pair, a shadow run or two batch jobs over the same
file compare row for row: label agreement and confusion, score deltas and their histogram,
quality against known truth, latency per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _side(prediction: dict[str, Any]) -> dict[str, Any]:
    return {"prediction_id": prediction["id"],
            "model": {"name": prediction["model_name"], "version": prediction["model_version"]}}


def compare(a: dict[str, Any], b: dict[str, Any], rows_a: list[dict[str, Any]],
            rows_b: list[dict[str, Any]], bins: int = 20, positive: str | None = None) -> dict[str, Any]:
    """``a``/``b``: the predictions; ``rows_*``: their stored rows; ``positive``: the truth value that
    counts as positive for ROC AUC (default: the second class in sort order)."""
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
