"""The model-quality gate between `train` and `push`: a new model passes only if its validation
metrics clear fixed floors and do not fall behind the model in production (the champion) by more
than an allowed margin.

    python -m jenkins.gate --family gender --model-dir build/train/gender/opt_ml/model \
        [--floors "gender.roc_auc=0.65"] [--champion build/champion/gender --max-drop 0.01 \
        --require-champion] [--min-coverage 'M=0.05@0.8'] [--report build/gate/gender.json]
    python -m jenkins.gate --model-dir DIR --min roc_auc=0.60   (exactly these floors)

The floors: those the family declares (training/<family>/family.py `gate`), each overridden by an
item of --floors that names it (the pipeline's GATE_FLOORS; jenkins.families.for_family); --min
METRIC=VALUE, when given, is the whole set instead. Which way a metric is better is the family's
objective for it (Minimize: lower is better), or for a metric it does not declare, a loss-like
name (logloss, loss, rmse, mae).

The candidate's metrics come from its model.json (the manifest `train` writes). The champion is
read from what the deploy target serves, as the champion commands leave it in the --champion
folder: model.json (a model directory or the served manifest), release.json (the body of GET
/release: {"release", "model", "version", "manifest"}), or, when the target has no champion,
champion.json saying why ({"found": false, "reason": ...}). A gate without a champion says so on
stdout and in its report, and fails with --require-champion; it never skips the comparison
silently. Lower-is-better metrics are compared the other way round.

--min-coverage CLASS=X@P (gender models trained with target_precision) requires the class's
operating point, from the manifest's operating_points, to label at least the share X of the
validation devices with a precision whose Wilson 95% lower bound is at least P; CLASS '*' is each
class of the model. A class without a threshold, or a model without operating points, fails by name.

Exit 0 when it passes, 1 when it does not (each reason on its own line), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jenkins.families import for_family
from training.families import Family, all_families

LOWER_IS_BETTER = frozenset({"logloss", "loss", "rmse", "mae"})
MANIFEST = "model.json"
RELEASE = "release.json"
NO_CHAMPION = "champion.json"


def _better(metric: str, value: float, than: float, lower: Collection[str]) -> bool:
    return value <= than if metric in lower else value >= than


@dataclass(frozen=True)
class Champion:
    """What the deploy target serves now, or why nothing could be found."""

    metrics: dict[str, float] | None
    source: str
    reason: str = ""
    family: str | None = None
    release: str | None = None
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.metrics is not None

    def describe(self) -> str:
        if not self.found:
            return f"no champion: {self.reason}"
        label = " ".join(str(x) for x in (self.release, self.version) if x)
        return f"champion {label or '(unlabelled)'} from {self.source}"


def _manifest_champion(manifest: Mapping[str, Any], source: str, **kw: Any) -> Champion:
    metrics = manifest.get("metrics")
    if not isinstance(metrics, Mapping) or not metrics:
        return Champion(None, source, f"{source} holds a manifest without metrics")
    return Champion({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}, source,
                    family=manifest.get("family"), version=kw.pop("version", manifest.get("version")), **kw)


def read_champion(where: Path | None) -> Champion:
    """The champion left by the champion commands in ``where`` (a folder or one JSON file)."""
    if where is None:
        return Champion(None, "", "none was given (no --champion: this build deploys nowhere)")
    if where.is_dir():
        for name in (MANIFEST, RELEASE, NO_CHAMPION):
            if (where / name).is_file():
                where = where / name
                break
        else:
            return Champion(None, str(where), f"{where} holds none of {MANIFEST}, {RELEASE}, {NO_CHAMPION}")
    elif not where.is_file():
        why = "this build deploys nowhere: a branch other than main, or DEPLOY_TARGET none"
        return Champion(None, str(where), f"{where} does not exist: no champion was read ({why})")
    try:
        data = json.loads(where.read_text())
    except ValueError as exc:
        return Champion(None, str(where), f"{where} is not JSON ({exc})")
    if not isinstance(data, Mapping):
        return Champion(None, str(where), f"{where} is not a JSON object")
    if data.get("found") is False or where.name == NO_CHAMPION:
        return Champion(None, str(where), str(data.get("reason") or "the target reports no champion"))
    if "manifest" in data:  # the body of GET /release
        manifest = data.get("manifest") or {}
        return _manifest_champion(manifest, str(where), release=data.get("release"),
                                  version=data.get("version") or manifest.get("version"))
    return _manifest_champion(data, str(where), release=data.get("release"))


def evaluate(metrics: Mapping[str, float], floors: Mapping[str, float],
             champion: Mapping[str, float] | None = None, max_drop: float = 0.0,
             lower: Collection[str] = LOWER_IS_BETTER) -> list[str]:
    """Every reason the candidate fails; empty when it passes. ``lower``: the metrics of which a
    lower value is better."""
    reasons = []
    for metric, floor in floors.items():
        if metric not in metrics:
            known = ", ".join(sorted(metrics))
            reasons.append(f"{metric}: the model reports no such metric (it has {known})")
        elif not _better(metric, float(metrics[metric]), floor, lower):
            reasons.append(f"{metric} = {metrics[metric]:.4f} misses the floor {floor:.4f}")
    for metric in floors:
        if champion is None or metric not in champion or metric not in metrics:
            continue
        old, new = float(champion[metric]), float(metrics[metric])
        allowed = old + max_drop if metric in lower else old - max_drop
        if not _better(metric, new, allowed, lower):
            reasons.append(f"{metric} = {new:.4f} is worse than the champion's {old:.4f} "
                           f"by more than {max_drop:g}")
    return reasons


def decide(metrics: Mapping[str, float], floors: Mapping[str, float], champion: Champion,
           max_drop: float, family: str | None = None, require_champion: bool = False,
           lower: Collection[str] = LOWER_IS_BETTER) -> dict[str, Any]:
    """The gate's decision as the report holds it: passed, reasons, notes and both sides' metrics."""
    reasons = evaluate(metrics, floors, champion.metrics, max_drop, lower)
    notes = [champion.describe()]
    if champion.found:
        if family and champion.family and champion.family != family:
            reasons.append(f"the champion at {champion.source} is a {champion.family} model, not {family}: "
                           "is the champion read from the right endpoint?")
        for metric in floors:
            if champion.metrics is not None and metric not in champion.metrics:
                notes.append(f"{metric}: the champion reports no such metric; not compared")
    elif require_champion:
        reasons.append(f"{champion.describe()}, and --require-champion is set")
    else:
        notes.append("compared with the floors only")
    return {"passed": not reasons, "family": family, "reasons": reasons, "notes": notes,
            "metrics": dict(metrics), "floors": dict(floors), "max_drop": max_drop,
            "champion": {"found": champion.found, "source": champion.source, "reason": champion.reason,
                         "release": champion.release, "version": champion.version,
                         "family": champion.family, "metrics": champion.metrics}}


def coverage_reasons(manifest: Mapping[str, Any], floors: Sequence[tuple[str, float, float]]) -> list[str]:
    """Every (class, coverage, precision) floor the model's operating points miss, naming the class."""
    classes = [str(c) for c in manifest.get("classes") or ()]
    points = manifest.get("operating_points")
    reasons = []
    for wanted, coverage, precision in floors:
        for name in classes if wanted == "*" else [wanted]:
            what = f"coverage of {name} at precision >= {precision:g}"
            if not isinstance(points, Mapping):
                reasons.append(f"{what}: the model has no operating points (train it with target_precision)")
            elif name not in classes:
                reasons.append(f"{what}: the model has no class {name!r} (classes {', '.join(classes)})")
            elif points["thresholds"].get(name) is None:
                why = points.get("not_reached", {}).get(name, "")
                reasons.append(f"{what}: the model labels no {name} device ({why})")
            elif points["precision_lower_bound"][name] < precision:
                reasons.append(f"{what}: its operating point's precision lower bound "
                               f"{points['precision_lower_bound'][name]:.4f} (target "
                               f"{points['target_precision'][name]:g}) is below {precision:g}")
            elif points["coverage"][name] < coverage:
                reasons.append(f"{what} = {points['coverage'][name]:.4f} misses the floor {coverage:g}")
    return reasons


def _coverage_floor(text: str) -> tuple[str, float, float]:
    name, _, rest = text.partition("=")
    coverage, at, precision = rest.partition("@")
    try:
        if not name.strip() or not at:
            raise ValueError
        return name.strip(), float(coverage), float(precision)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CLASS=COVERAGE@PRECISION, got {text!r}") from None


def _floor(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected METRIC=VALUE, got {text!r}") from None


def floors_for(family: Family | None, floors_text: str, minimums: Sequence[tuple[str, float]]
               ) -> dict[str, float]:
    """--min when given; else the family's declared floors, overridden by its --floors items."""
    if minimums:
        return dict(minimums)
    if family is None:
        return {}
    chosen = dict(family.gate)
    for item in for_family(floors_text, family.name):
        name, value = _floor(item)
        chosen[name] = value
    return chosen


def lower_is_better(family: Family | None, metrics: Collection[str]) -> frozenset[str]:
    """The metrics of which a lower value is better: as the family's objectives say, and for a
    metric it declares none for (or no family), a loss-like name."""
    lower = set()
    for metric in metrics:
        said = family.lower_is_better(metric) if family is not None else None
        if metric in LOWER_IS_BETTER if said is None else said:
            lower.add(metric)
    return frozenset(lower)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jenkins.gate", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--family", help="the candidate's family; a champion of another family fails")
    parser.add_argument("--min", dest="floors", type=_floor, action="append", default=[],
                        metavar="METRIC=VALUE", help="a floor (a ceiling for a lower-is-better metric); "
                        "repeatable; replaces the family's declared floors")
    parser.add_argument("--floors", dest="floor_items", default="", metavar='"FAMILY.METRIC=VALUE ..."',
                        help="override the family's declared floors, metric by metric")
    parser.add_argument("--champion", type=Path,
                        help="folder (or JSON file) the champion command filled from the deploy target")
    parser.add_argument("--max-drop", type=float, default=0.0)
    parser.add_argument("--require-champion", nargs="?", const="true", default="false",
                        choices=("true", "false"), help="fail when no champion is found")
    parser.add_argument("--min-coverage", dest="coverage", type=_coverage_floor, action="append", default=[],
                        metavar="CLASS=X@P", help="the class's operating point labels >= X of the validation "
                        "devices at a precision lower bound >= P ('*': each class); repeatable")
    parser.add_argument("--report", type=Path, help="write the decision as JSON here")
    args = parser.parse_args(argv)
    if not (args.model_dir / MANIFEST).is_file():
        print(f"gate: {args.model_dir} holds no model.json; did `train` succeed?", file=sys.stderr)
        return 2
    manifest = json.loads((args.model_dir / MANIFEST).read_text())
    metrics = {k: float(v) for k, v in (manifest.get("metrics") or {}).items() if isinstance(v, int | float)}
    family = args.family or manifest.get("family")
    if args.family and manifest.get("family") and manifest["family"] != args.family:
        print(f"gate: {args.model_dir} holds a {manifest['family']} model, not {args.family}",
              file=sys.stderr)
        return 2
    declared = all_families().get(family) if family else None
    floors = floors_for(declared, args.floor_items, args.floors)
    if not floors and not args.coverage:
        parser.error(f"no floors: {family or 'the model'} is no declared family; give --min METRIC=VALUE "
                     "(those metrics are also the ones compared)")
    decision = decide(metrics, floors, read_champion(args.champion), args.max_drop, family,
                      args.require_champion == "true", lower_is_better(declared, floors))
    if args.coverage:
        decision["coverage_floors"] = [{"class": c, "coverage": x, "precision": p}
                                       for c, x, p in args.coverage]
        decision["reasons"] += coverage_reasons(manifest, args.coverage)
        decision["passed"] = not decision["reasons"]
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(decision, indent=1))
    prefix = f"gate{f' {family}' if family else ''}:"
    for note in decision["notes"]:
        print(f"{prefix} {note}")
    for reason in decision["reasons"]:
        print(f"{prefix} FAIL {reason}")
    if decision["passed"]:
        shown = ", ".join([f"{m}={metrics[m]:.4f}" for m in decision["floors"]]
                          + [f"coverage {c}>={x:g}@{p:g}" for c, x, p in args.coverage])
        against = " (not worse than the champion)" if decision["champion"]["found"] else ""
        print(f"{prefix} PASS {shown}{against}")
    return 0 if decision["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
