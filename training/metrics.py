"""One metric line format, and the regexes that read it back.

Lines look like ``[metrics] step=12 train:logloss=0.4123 validation:roc_auc=0.8121``:
spaces only (CloudWatch shows a tab as #011), one ``name=value`` per metric. SageMaker
HPO MetricDefinitions, the README, Jenkins' quality gate and the tests all use
``metric_definitions()`` from here.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO

from training import families

PREFIX = "[metrics]"
VALUE_PATTERN = r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf))"

log = logging.getLogger("training.metrics")


def format_line(metrics: Mapping[str, float], step: int | str | None = None) -> str:
    parts = [PREFIX]
    if step is not None:
        parts.append(f"step={step}")
    for name, value in metrics.items():
        if " " in name or "=" in name:
            raise ValueError(f"metric name {name!r} may not contain spaces or '='")
        parts.append(f"{name}={_fmt(value)}")
    return " ".join(parts)


def _fmt(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def emit(metrics: Mapping[str, float], step: int | str | None = None, stream: TextIO | None = None) -> str:
    """Print a metric line to stdout (where SageMaker's regexes look) and return it."""
    line = format_line(metrics, step)
    out = stream or sys.stdout
    out.write(line + "\n")
    out.flush()
    return line


def regex_for(name: str) -> str:
    """The regex capturing ``name``'s value from a metric line (SageMaker's 500-char limit holds)."""
    return r"\[metrics\].*\s" + re.escape(name) + "=" + VALUE_PATTERN


def published() -> list[str]:
    """Every metric name `train` prints, sorted: each family's HPO objectives and counts."""
    return sorted({name for family in families.all_families().values()
                   for name in (*family.objectives, *family.counts)})


def metric_definitions(names: Iterable[str] | None = None) -> list[dict[str, str]]:
    """SageMaker MetricDefinitions for the published metrics."""
    chosen = list(names) if names is not None else published()
    return [{"Name": n, "Regex": regex_for(n)} for n in chosen]


def parse(text: str) -> dict[str, list[float]]:
    """Every value of every metric in a log, in order: what HPO would see."""
    found: dict[str, list[float]] = {}
    for line in text.splitlines():
        start = line.find(PREFIX)
        if start < 0:
            continue
        for token in line[start + len(PREFIX):].split():
            name, sep, value = token.partition("=")
            if sep and name != "step":
                try:
                    found.setdefault(name, []).append(float(value))
                except ValueError:
                    continue
    return found
