"""Operating thresholds per class at a target precision, chosen on the validation split only.

For each class c with a target (``target_precision`` or ``target_precision_<c>``), a device is
labelled c when the model leans to c and P(c) >= t_c (modelformat/gender/operating.py, the rule
serving applies). Of the thresholds t >= 0.5 that the validation devices' scores give (the
labelled set changes only there), the lowest is chosen whose Wilson 95% lower bound of precision
reaches the target: the widest audience whose precision is still promised, and a threshold resting
on a handful of devices (12 devices all right have a lower bound of 0.76) is not trusted. A class
that no threshold brings there gets none: it is never labelled, and the log, evaluation.json/md and
the manifest say so. The test data, if any, is never read here: ``select`` sees what ``train``
holds out for validation (the validation channel, or the validation_fraction split of train).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelformat.gender.operating import KEY, LEAN, MANIFEST_KEY, class_scores
from training.errors import UserError

log = logging.getLogger("training.gender")

PREFIX = "target_precision_"
CONFIDENCE = 0.95
Z = 1.959963984540054  # the normal quantile of 0.975: a two-sided 95% interval's lower end
CURVE_POINTS = 100  # points per class kept of the curve (evaluation.json and the plot)


def wilson_lower(successes: Any, n: Any, z: float = Z) -> Any:
    """The lower end of the Wilson score interval for a proportion (0 where n is 0); arrays or scalars."""
    k = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        phat = k / m
        z2 = z * z
        centre = phat + z2 / (2 * m)
        spread = z * np.sqrt(phat * (1 - phat) / m + z2 / (4 * m * m))
        low = (centre - spread) / (1 + z2 / m)
    low = np.where(m > 0, np.clip(low, 0.0, 1.0), 0.0)
    return float(low) if low.ndim == 0 else low


def targets(params: Mapping[str, Any], classes: list[Any]) -> dict[str, float]:
    """The target precision of each class (by its text): ``target_precision_<c>`` over
    ``target_precision``; a class with neither has no target. A key naming no class is an error
    naming the classes found (they are only known once the labels are read)."""
    names = [str(c) for c in classes]
    found: dict[str, float] = {}
    for key, value in params.items():
        if not key.startswith(PREFIX) or value is None:
            continue
        label = key[len(PREFIX):]
        if label not in names:
            options = " or ".join(f"{PREFIX}{n}" for n in names)
            raise UserError(f"Hyperparameter '{key}' names the class {label!r}, but the labels are "
                            f"{names}; use {options}")
        found[label] = float(value)
    default = params.get("target_precision")
    chosen = {n: found.get(n, default) for n in names}
    return {n: float(v) for n, v in chosen.items() if v is not None}


def _distinct(score: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (descending: each distinct score), devices labelled and right at each."""
    order = np.argsort(-score, kind="stable")
    s, t = score[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.empty(0, dtype=np.int64)
    return s[last], (last + 1).astype(np.int64), np.cumsum(t)[last].astype(np.int64)


def choose(y: np.ndarray, p: np.ndarray, classes: list[Any], goal: Mapping[str, float]) -> dict[str, Any]:
    """The operating points of the validation labels ``y`` (1 = positive) and probabilities ``p``
    of the positive class: per class the threshold, precision, its lower bound, support (devices
    labelled), coverage (their share of all validation devices), recall, and the curve."""
    n_all = len(y)
    names = [str(c) for c in classes]
    out: dict[str, Any] = {
        "key": KEY, "rule": "label c when the model leans to c (P(positive) >= 0.5 for the positive "
        "class) and P(c) >= thresholds[c]; a class without a threshold is never labelled",
        "bound": "wilson", "confidence": CONFIDENCE, "validation_rows": n_all,
        "target_precision": {n: goal[n] for n in names if n in goal},
        "thresholds": {}, "precision": {}, "precision_lower_bound": {}, "support": {},
        "coverage": {}, "recall": {}, "not_reached": {}, "curve": {},
    }
    labelled = 0
    for positive, name in ((False, names[0]), (True, names[1])):
        score, leans = class_scores(p, positive)
        truth = (y == 1) if positive else (y == 0)
        thr, support, right = _distinct(score[leans], truth[leans].astype(np.int64))
        low = wilson_lower(right, support)
        target = goal.get(name)
        ok = np.flatnonzero(low >= target) if target is not None else np.empty(0, dtype=np.int64)
        i = int(ok[-1]) if len(ok) else None  # thresholds descend: the last that reaches it is the lowest
        out["curve"][name] = _curve(thr, support, right, low, n_all, i)
        if target is None:
            out["thresholds"][name] = None
            out["not_reached"][name] = (f"no target precision for {name} (target_precision or "
                                        f"{PREFIX}{name}): {name} devices are never labelled")
            continue
        if i is None:
            out["thresholds"][name] = None
            out["not_reached"][name] = _not_reached(name, target, thr, support, right, low, n_all)
            continue
        threshold = LEAN if i == len(thr) - 1 else float(thr[i])  # the same devices as the lowest score
        n, k = int(support[i]), int(right[i])
        labelled += n
        out["thresholds"][name] = threshold
        out["precision"][name] = k / n
        out["precision_lower_bound"][name] = float(low[i])
        out["support"][name] = n
        out["coverage"][name] = n / n_all
        out["recall"][name] = k / max(1, int(truth.sum()))
    out["unlabelled"] = 1.0 - labelled / n_all if n_all else 1.0
    return out


def _not_reached(name: str, target: float, thr: np.ndarray, support: np.ndarray, right: np.ndarray,
                 low: np.ndarray, n_all: int) -> str:
    if not len(thr):
        return (f"{name} cannot reach the target precision {target:g}: the model leans to {name} for "
                f"none of the {n_all} validation devices; {name} devices are never labelled")
    i = int(np.argmax(low))
    return (f"{name} cannot reach the target precision {target:g} at any threshold on the {n_all} "
            f"validation devices (the best 95% lower bound is {low[i]:.3f}: precision "
            f"{right[i] / support[i]:.3f} on {int(support[i])} devices at threshold {thr[i]:.4f}); "
            f"{name} devices are never labelled")


def _curve(thr: np.ndarray, support: np.ndarray, right: np.ndarray, low: np.ndarray, n_all: int,
           chosen: int | None) -> list[dict[str, float]]:
    """About CURVE_POINTS points of the precision/coverage curve, evenly spread over the support,
    the chosen point among them."""
    if not len(thr):
        return []
    spread = np.searchsorted(support, np.linspace(support[0], support[-1], CURVE_POINTS))
    picks = np.unique(np.r_[spread, [] if chosen is None else [chosen]].astype(np.int64))
    picks = picks[picks < len(thr)]
    return [{"threshold": float(thr[i]), "support": int(support[i]), "coverage": int(support[i]) / n_all,
             "precision": int(right[i]) / int(support[i]), "precision_lower_bound": float(low[i])}
            for i in picks]


def manifest_part(points: Mapping[str, Any]) -> dict[str, Any]:
    """What the manifest keeps (serving reads ``thresholds``; the gate the rest): all but the curve."""
    return {k: v for k, v in points.items() if k != "curve"}


def metrics(points: Mapping[str, Any]) -> dict[str, float]:
    """``coverage_<c>`` per class with a target (0 when not reached), for the gate's floors."""
    return {f"coverage_{name}": float(points["coverage"].get(name, 0.0))
            for name in points["target_precision"]}


def log_points(points: Mapping[str, Any]) -> None:
    for name, threshold in points["thresholds"].items():
        if threshold is None:
            level = logging.WARNING if name in points["target_precision"] else logging.INFO
            log.log(level, points["not_reached"][name], extra={"stage": "evaluate"})
            continue
        log.info("operating point %s: threshold %.4f, precision %.4f (95%% lower bound %.4f >= target "
                 "%g) on %d validation devices, coverage %.2f%%", name, threshold,
                 points["precision"][name], points["precision_lower_bound"][name],
                 points["target_precision"][name], points["support"][name],
                 100 * points["coverage"][name], extra={"stage": "evaluate"})


def report_lines(points: Mapping[str, Any]) -> list[str]:
    """The evaluation.md section."""
    lines = ["", f"Operating points (`{MANIFEST_KEY}`; answers carry `{KEY}`), chosen on the "
             f"{points['validation_rows']} validation devices with a Wilson 95% lower bound of precision:",
             "", "| class | target precision | threshold | precision | lower bound | support | coverage |",
             "|---|---|---|---|---|---|---|"]
    for name, threshold in points["thresholds"].items():
        target = points["target_precision"].get(name)
        if threshold is None:
            lines.append(f"| {name} | {'-' if target is None else f'{target:g}'} | none: never labelled "
                         "| - | - | - | 0 |")
            continue
        lines.append(f"| {name} | {target:g} | {threshold:.4f} | {points['precision'][name]:.4f} | "
                     f"{points['precision_lower_bound'][name]:.4f} | {points['support'][name]} | "
                     f"{100 * points['coverage'][name]:.2f}% |")
    lines += ["", f"Devices without a label: {100 * points['unlabelled']:.2f}%."]
    lines += [f"- {text}" for text in points["not_reached"].values()]
    return lines


def plot(points: Mapping[str, Any], folder: Path, title: str) -> str:
    """precision_coverage.png: per class, precision (and its lower bound) against coverage, the
    target and the chosen point; returns its name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    for (name, curve), colour in zip(points["curve"].items(), ("tab:red", "tab:blue"), strict=False):
        if not curve:
            continue
        cov = [c["coverage"] for c in curve]
        ax.plot(cov, [c["precision"] for c in curve], color=colour, label=f"{name}: precision")
        ax.plot(cov, [c["precision_lower_bound"] for c in curve], color=colour, linestyle="--",
                linewidth=1, label=f"{name}: 95% lower bound")
        target = points["target_precision"].get(name)
        if target is not None:
            ax.axhline(target, color=colour, linestyle=":", linewidth=1, label=f"{name}: target {target:g}")
        if points["thresholds"].get(name) is not None:
            ax.plot([points["coverage"][name]], [points["precision"][name]], "o", color=colour,
                    label=f"{name}: chosen, t = {points['thresholds'][name]:.3f}")
    ax.set(xlabel="coverage (share of validation devices labelled)", ylabel="precision",
           title=f"Precision / coverage: {title}", ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = folder / "precision_coverage.png"
    fig.savefig(path)
    plt.close(fig)
    return path.name
