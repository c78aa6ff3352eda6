"""The model-quality gate between `train` and `push`: a new model passes only if its validation
metrics clear fixed floors and do not fall behind the model in production (the champion) by more
than an allowed margin.

    python -m jenkins.gate --model-dir out/model --min roc_auc=0.60 --min pr_auc=0.55 \
        [--champion deployed/model --max-drop 0.01] [--report gate.json]

Exit 0 when it passes, 1 when it does not (each reason on its own line), 2 on a usage error.
Metrics come from the model directory's model.json, the manifest `train` writes; lower-is-better
metrics (logloss) are compared the other way round.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LOWER_IS_BETTER = frozenset({"logloss", "loss", "rmse", "mae"})


def _better(metric: str, value: float, than: float) -> bool:
    return value <= than if metric in LOWER_IS_BETTER else value >= than


def evaluate(metrics: Mapping[str, float], floors: Mapping[str, float],
             champion: Mapping[str, float] | None = None, max_drop: float = 0.0) -> list[str]:
    """Every reason the candidate fails; empty when it passes."""
    reasons = []
    for metric, floor in floors.items():
        if metric not in metrics:
            known = ", ".join(sorted(metrics))
            reasons.append(f"{metric}: the model reports no such metric (it has {known})")
        elif not _better(metric, float(metrics[metric]), floor):
            reasons.append(f"{metric} = {metrics[metric]:.4f} misses the floor {floor:.4f}")
    for metric in floors:
        if champion is None or metric not in champion or metric not in metrics:
            continue
        old, new = float(champion[metric]), float(metrics[metric])
        allowed = old + max_drop if metric in LOWER_IS_BETTER else old - max_drop
        if not _better(metric, new, allowed):
            reasons.append(f"{metric} = {new:.4f} is worse than the champion's {old:.4f} "
                           f"by more than {max_drop:g}")
    return reasons


def _floor(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected METRIC=VALUE, got {text!r}") from None


def _metrics(model_dir: Path) -> dict[str, Any]:
    manifest = json.loads((model_dir / "model.json").read_text())
    return dict(manifest.get("metrics") or {})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jenkins.gate", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--min", dest="floors", type=_floor, action="append", default=[],
                        metavar="METRIC=VALUE", help="a floor (a ceiling for logloss); repeatable")
    parser.add_argument("--champion", type=Path, help="model directory of the model in production")
    parser.add_argument("--max-drop", type=float, default=0.0)
    parser.add_argument("--report", type=Path, help="write the decision as JSON here")
    args = parser.parse_args(argv)
    if not (args.model_dir / "model.json").is_file():
        print(f"gate: {args.model_dir} holds no model.json; did `train` succeed?", file=sys.stderr)
        return 2
    metrics = _metrics(args.model_dir)
    champion = None
    if args.champion is not None and (args.champion / "model.json").is_file():
        champion = _metrics(args.champion)
    floors = dict(args.floors)
    reasons = evaluate(metrics, floors, champion, args.max_drop)
    decision = {"passed": not reasons, "reasons": reasons, "metrics": metrics, "floors": floors,
                "champion": champion, "max_drop": args.max_drop}
    if args.report:
        args.report.write_text(json.dumps(decision, indent=1))
    for reason in reasons:
        print(f"gate: FAIL {reason}")
    if not reasons:
        shown = ", ".join(f"{m}={metrics[m]:.4f}" for m in floors)
        print(f"gate: PASS {shown}" + (" (not worse than the champion)" if champion else ""))
    return 0 if not reasons else 1


if __name__ == "__main__":
    sys.exit(main())
