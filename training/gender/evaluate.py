"""Evaluation of a binary classifier: metrics, ROC/PR plots, global importance and a short report.

Written to /opt/ml/output/data (uploaded by SageMaker as output.tar.gz) so people can look
at the curves rather than read numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modelformat.gender import contributions
from modelformat.gender.contributions import Pipeline
from training.gender import operating

# Validation rows attributed for global importance at most (above it, a seeded sample): exact TreeSHAP
# costs about 1 ms a row for 200 trees of depth 6 on 2 cores, the linear attributions next to nothing.
TREE_ROWS = 2_000
LINEAR_ROWS = 20_000
IMPORTANCE_UNIT = "mean |log-odds contribution| of the positive class"
SHOWN_FIELDS = 30  # fields in the bar plot and the report's table; evaluation.json has them all


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "logloss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
    }


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, int]:
    pred = p >= threshold
    truth = y == 1
    return {
        "tp": int(np.sum(pred & truth)), "fp": int(np.sum(pred & ~truth)),
        "tn": int(np.sum(~pred & ~truth)), "fn": int(np.sum(~pred & truth)),
    }


def plot_curves(y: np.ndarray, p: np.ndarray, folder: Path, title: str) -> list[str]:
    """roc_curve.png and pr_curve.png; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    written: list[str] = []
    if len(np.unique(y)) < 2:
        return written
    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot(fpr, tpr, label=f"ROC AUC = {auc(fpr, tpr):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title=f"ROC: {title}")
    written.append(_save(fig, ax, "lower right", folder / "roc_curve.png"))

    prec, rec, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot(rec, prec, label=f"PR AUC = {auc(rec, prec):.3f}")
    ax.axhline(float(np.mean(y)), linestyle="--", color="grey", linewidth=1, label="base rate")
    ax.set(xlabel="Recall", ylabel="Precision", title=f"Precision-recall: {title}")
    written.append(_save(fig, ax, "upper right", folder / "pr_curve.png"))
    return written


def _save(fig: Any, ax: Any, legend: str, path: Path) -> str:
    import matplotlib.pyplot as plt

    ax.legend(loc=legend)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def global_importance(pipeline: Pipeline, scorer: Any, x: Any, seed: int) -> dict[str, Any] | None:
    """Per raw field, the mean |attribution| (and the signed mean) over the validation rows ``x``,
    from the same exact attributions served as explanations (modelformat/gender/contributions.py);
    above ``TREE_ROWS`` rows (XGBoost) or ``LINEAR_ROWS`` (logistic regression), over a sample drawn
    with ``seed``. None for a scorer that gives no attributions (a plug-in algorithm's)."""
    if not contributions.explainable(scorer):
        return None
    n = int(x.shape[0])
    cap = TREE_ROWS if getattr(scorer, "booster", None) is not None else LINEAR_ROWS
    sample = None
    if n > cap:
        rows = np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))
        x = x[rows]
        sample = f"{cap} of the {n} validation rows, drawn at random with seed {seed}"
    found = contributions.importance(pipeline, scorer, x)
    order = np.argsort(-found.mean_abs, kind="stable")
    return {
        "method": found.method, "rows": found.rows, "sample": sample, "unit": IMPORTANCE_UNIT,
        "bias": found.bias,
        "fields": [{"field": found.headers[i], "mean_abs": float(found.mean_abs[i]),
                    "mean": float(found.mean[i])} for i in order],
    }


def plot_importance(importance: dict[str, Any], folder: Path, title: str) -> str:
    """feature_importance.png: a horizontal bar per field, the largest at the top; returns its name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = importance["fields"][:SHOWN_FIELDS]
    names = [str(f["field"]) for f in fields][::-1]
    values = [f["mean_abs"] for f in fields][::-1]
    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.3 * len(fields)), dpi=100)
    ax.barh(range(len(fields)), values, color="tab:blue")
    ax.set_yticks(range(len(fields)), names)
    shown = "" if len(importance["fields"]) <= SHOWN_FIELDS else \
        f" (top {SHOWN_FIELDS} of {len(importance['fields'])})"
    ax.set(xlabel=importance["unit"], title=f"Global importance: {title}{shown}")
    fig.tight_layout()
    path = folder / "feature_importance.png"
    fig.savefig(path)
    plt.close(fig)
    return path.name


def write_report(folder: Path, summary: dict[str, Any]) -> list[str]:
    """evaluation.json (machine) and evaluation.md (people)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps(summary, indent=2, default=str),
                                            encoding="utf-8")
    m = summary.get("metrics", {})
    lines = [
        f"# Evaluation: {summary.get('algorithm')} ({summary.get('family')})",
        "",
        f"- validation rows: {summary.get('validation_rows')}  (source: {summary.get('validation_source')})",
        f"- training rows: {summary.get('train_rows')}",
        f"- classes: negative {summary.get('classes', ['?', '?'])[0]!r}, "
        f"positive {summary.get('classes', ['?', '?'])[1]!r}; threshold {summary.get('threshold')}",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.4f} |" for k, v in m.items() if isinstance(v, float)]
    if "confusion" in summary:
        c = summary["confusion"]
        lines += ["", "Confusion at the threshold:", "",
                  "| | predicted positive | predicted negative |", "|---|---|---|",
                  f"| actual positive | {c['tp']} | {c['fn']} |",
                  f"| actual negative | {c['fp']} | {c['tn']} |"]
    if "operating_points" in summary:
        lines += operating.report_lines(summary["operating_points"])
    if "global_importance" in summary:
        lines += _importance_lines(summary["global_importance"])
    lines += ["", f"Plots: {', '.join(summary.get('plots', [])) or 'none (no validation data)'}"]
    (folder / "evaluation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["evaluation.json", "evaluation.md"]


def _importance_lines(importance: dict[str, Any]) -> list[str]:
    fields = importance["fields"]
    rows = f"{importance['rows']} validation rows"
    if importance.get("sample"):
        rows = importance["sample"]
    shown = "" if len(fields) <= SHOWN_FIELDS else \
        f" (top {SHOWN_FIELDS} of {len(fields)}; all in evaluation.json)"
    lines = ["", f"Global importance{shown}: {importance['unit']}, over {rows} ({importance['method']}):",
             "", "| field | mean abs contribution | mean contribution |", "|---|---|---|"]
    lines += [f"| {_cell(f['field'])} | {f['mean_abs']:.4f} | {f['mean']:+.4f} |"
              for f in fields[:SHOWN_FIELDS]]
    return lines


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")
