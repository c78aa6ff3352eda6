"""Operating thresholds on the real TalkingData devices: what each target precision buys, measured on
held-out devices that no choice saw, and what the audience_label costs a 1-row /invocations.

Reads ../shared/data/talkingdata (or $MLSHIP_DATA/talkingdata, or --src); skips with a message when
it is absent (the data may not be redistributed, and nothing of it is copied into the repository:
the channels are written under --workdir, bench/results/work by default). The labelled devices are
split once, seeded and stratified by gender: 60% train, 20% validation (the thresholds are chosen
there, as `train` chooses them), 20% held out (only measured). `train` runs once through the real
contract with target_precision=0.8 (the XGBoost settings of bench/gender_talkingdata.py); the other
targets are chosen by the same function on the same validation probabilities, checked to give the
model's own thresholds at 0.8. Per target (0.6, 0.7, 0.8, 0.9) and class: the threshold, the
validation precision and its Wilson 95% lower bound, and on the held-out devices the coverage and
the precision achieved (with its lower bound).

Serving cost: two `serve` processes with the image's defaults, the same trees with and without
operating thresholds (the model's copy without ``operating_points`` in model.json), 1 JSON device
record (the TalkingData model) and 1 numeric CSV row (a 200-tree model trained on synthetic rows
with target_precision) at c=8, measured in alternation (A B B A ...), medians; and, steadier on a
shared machine, each answer's cost in one process (the model's transform hook for the CSV row,
predict for the JSON record; the fastest of 5 x 20,000 calls). Target: within 5%.

    python -m bench gender_operating_points [--src DIR] [--seconds 5] [--reps 3] [--no-serving]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.gender_talkingdata import RUNS
from bench.harness import BIN, DATA, free_port, median_of, parser, post, report, start, stop, wait_ready, wrk
from container.settings import Settings
from inference import predictors
from inference.codecs import Inputs
from modelformat.gender.operating import KEY, MANIFEST_KEY, OperatingPoints
from training.gender import operating, synth, talkingdata

TARGETS = (0.6, 0.7, 0.8, 0.9)
TRAINED_AT = 0.8
SPLIT = (0.6, 0.2, 0.2)


def split(records: pd.DataFrame, seed: int = 42) -> np.ndarray:
    """0 train, 1 validation, 2 held out; stratified by gender."""
    rng = np.random.default_rng(seed)
    part = np.zeros(len(records), dtype=np.int8)
    for _, idx in records.groupby("gender").indices.items():
        shuffled = rng.permutation(idx)
        n_train, n_val = round(len(idx) * SPLIT[0]), round(len(idx) * SPLIT[1])
        part[shuffled[n_train:n_train + n_val]] = 1
        part[shuffled[n_train + n_val:]] = 2
    return part


def train(base: Path, hps: dict[str, Any]) -> dict[str, Any]:
    (base / "input/config").mkdir(parents=True, exist_ok=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hps.items()}))
    for stale in ("model", "checkpoints"):  # a fresh job: no resume from an earlier run's checkpoints
        shutil.rmtree(base / stale, ignore_errors=True)
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "train")], env={**os.environ, "SM_BASE_DIR": str(base)},
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    manifest: dict[str, Any] = json.loads((base / "model/model.json").read_text())
    manifest["_seconds"] = round(time.monotonic() - started, 1)
    return manifest


def probabilities(model_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    predictor: Any = predictors.load(model_dir, threads=os.cpu_count() or 1)
    return np.asarray(predictor.scorer.predict_proba(predictor.features(Inputs(table=frame))))


def held_out(points: dict[str, Any], classes: list[str], y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Coverage and precision (with its lower bound) of each class's labels on the held-out devices."""
    rule = OperatingPoints(classes[0], classes[1], points["thresholds"][classes[0]],
                           points["thresholds"][classes[1]])
    labels = np.asarray(rule.labels(p))
    found: dict[str, Any] = {}
    for positive, name in ((False, classes[0]), (True, classes[1])):
        chosen = labels == name
        n, k = int(chosen.sum()), int((chosen & ((y == 1) == positive)).sum())
        found[name] = {"support": n, "coverage": n / len(y), "precision": k / n if n else None,
                       "precision_lower_bound": operating.wilson_lower(k, n) if n else None,
                       "base_rate": float(np.mean((y == 1) == positive))}
    return found


def quality(args: Any) -> dict[str, Any] | None:
    if not (args.src / "gender_age_train.csv").exists():
        print(f"skipped: no TalkingData files under {args.src} (set MLSHIP_DATA to the shared data folder "
              "or pass --src)")
        return None
    records = talkingdata.load(args.src)
    part = split(records)
    base = args.workdir / "operating" / "talkingdata" / "opt_ml"
    for channel, which in (("train", 0), ("validation", 1)):
        synth.write(records[part == which], base / f"input/data/{channel}/devices.parquet", "parquet")
    try:
        manifest = train(base, {**RUNS["xgboost"], "target_precision": TRAINED_AT})
    finally:  # the devices' copies go as soon as the job is done (the data may not be redistributed)
        shutil.rmtree(base / "input/data", ignore_errors=True)
    classes = [str(c) for c in manifest["classes"]]
    print(f"{len(records)} devices: {int((part == 0).sum())} train, {int((part == 1).sum())} validation "
          f"(thresholds chosen here), {int((part == 2).sum())} held out; trained in "
          f"{manifest['_seconds']} s, "
          f"validation ROC AUC {manifest['metrics']['roc_auc']:.4f}", flush=True)
    frames = {which: records[part == which].reset_index(drop=True) for which in (1, 2)}
    y = {w: (f["gender"].astype(str) == classes[1]).to_numpy().astype(np.int32) for w, f in frames.items()}
    p = {w: probabilities(base / "model", f.drop(columns=["gender"])) for w, f in frames.items()}
    rows = []
    for target in TARGETS:
        points = operating.choose(y[1], p[1], classes, {c: target for c in classes})
        if target == TRAINED_AT:  # the same function on the same devices as `train`
            assert operating.manifest_part(points)["thresholds"] == manifest[MANIFEST_KEY]["thresholds"], \
                "the bench's choice differs from train's"
        test = held_out(points, classes, y[2], p[2])
        for name in classes:
            rows.append({"target": target, "class": name, "threshold": points["thresholds"][name],
                         "validation_precision": points["precision"].get(name),
                         "validation_lower_bound": points["precision_lower_bound"].get(name),
                         "validation_support": points["support"].get(name, 0),
                         "validation_coverage": points["coverage"].get(name, 0.0),
                         "statement": points["not_reached"].get(name),
                         **{f"held_out_{k}": v for k, v in test[name].items()}})
    print_table(rows)
    return {"devices": len(records), "split": {"train": int((part == 0).sum()),
                                               "validation": int((part == 1).sum()),
                                               "held_out": int((part == 2).sum())},
            "validation_roc_auc": manifest["metrics"]["roc_auc"], "train_seconds": manifest["_seconds"],
            "hyperparameters": {**RUNS["xgboost"], "target_precision": TRAINED_AT}, "rows": rows,
            "model_dir": str(base / "model")}


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| target | class | threshold | validation precision (95% lower bound), devices | held-out "
          "coverage | held-out precision (95% lower bound), devices |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["threshold"] is None:
            print(f"| {r['target']} | {r['class']} | none (never labelled) | best below target | 0 | - |")
            continue
        print(f"| {r['target']} | {r['class']} | {r['threshold']:.4f} | {_f(r['validation_precision'])} "
              f"({_f(r['validation_lower_bound'])}), {r['validation_support']} | "
              f"{100 * r['held_out_coverage']:.2f}% | {_f(r['held_out_precision'])} "
              f"({_f(r['held_out_precision_lower_bound'])}), {r['held_out_support']} |")
    for r in rows:
        if r["statement"]:
            print(f"- target {r['target']}: {r['statement']}")
    sys.stdout.flush()


def numeric_model(work: Path) -> Path:
    base = work / "operating" / "numeric" / "opt_ml"
    data = base / "input/data/train"
    data.mkdir(parents=True, exist_ok=True)
    synth.numeric(20_000, 60, seed=1).to_csv(data / "train.csv", index=False, header=False)
    train(base, {"num_round": 200, "max_depth": 6, "log_every": 50, "target_precision": 0.8})
    return base / "model"


def without_thresholds(model_dir: Path, target: Path) -> Path:
    """The same model files, its manifest without operating points: answers as before thresholds."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model_dir, target / "model")
    manifest = json.loads((target / "model/model.json").read_text())
    manifest.pop(MANIFEST_KEY)
    (target / "model/model.json").write_text(json.dumps(manifest))
    return target


def with_thresholds(model_dir: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(model_dir, target / "model")
    return target


def in_process(model_dir: Path, body: Path, ctype: str) -> float:
    """Microseconds of one answer in this process, the fastest of 5 x 20,000 calls."""
    import timeit

    from inference import codecs

    predictor = predictors.load(model_dir)
    raw = body.read_bytes()
    if ctype == "text/csv":
        def call() -> Any:
            return predictor.transform(raw, ctype, ctype)
    else:
        def call() -> Any:
            inputs = codecs.decode(raw, ctype, scalar_fields=predictor.scalar_fields)
            return codecs.encode(predictor.predict(inputs), ctype)
    call()
    return min(timeit.repeat(call, number=20_000, repeat=5)) / 20_000 * 1e6


def serving(args: Any, device_model: Path | None) -> dict[str, Any]:
    work = args.workdir / "operating" / "serve"
    work.mkdir(parents=True, exist_ok=True)
    models: dict[str, tuple[Path, Path, str]] = {}
    numeric = numeric_model(args.workdir)
    row = work / "row.csv"
    row.write_text(",".join(f"{v:.6f}" for v in np.random.default_rng(5).normal(size=60)) + "\n")
    models["csv1"] = (numeric, row, "text/csv")
    if device_model is not None:
        record = work / "record.json"
        frame = synth.generate(1, seed=9).drop(columns=["gender"])
        record.write_text(json.dumps(json.loads(frame.to_json(orient="records"))))
        models["json1"] = (device_model, record, "application/json")
    defaults: dict[str, str | None] = {name: None for name in Settings.variables()}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    for payload, (model_dir, _, _) in models.items():
        for side, make in (("plain", without_thresholds), ("thresholds", with_thresholds)):
            name = f"{payload}/{side}"
            ports[name] = free_port()
            base = make(model_dir, work / payload / side)
            procs[name] = start([str(BIN / "serve")], {**defaults, "SM_BASE_DIR": str(base),
                                                       "SAGEMAKER_BIND_TO_PORT": str(ports[name])},
                                work / f"{payload}-{side}.log")
    results: dict[str, Any] = {"seconds_per_point": args.seconds, "reps": args.reps, "connections": 8,
                               "settings": "image defaults (only SM_BASE_DIR and the port set)"}
    try:
        for port in ports.values():
            wait_ready(port)
        for payload, (_, body, ctype) in models.items():
            costs = {side: in_process(work / payload / side / "model", body, ctype)
                     for side in ("plain", "thresholds")}
            results[f"{payload}/in_process_us"] = costs
            print(f"{payload} in one process: {costs['plain']:.2f} us without thresholds, "
                  f"{costs['thresholds']:.2f} us with", flush=True)
            plain = post(ports[f"{payload}/plain"], body.read_bytes(), ctype, ctype)
            with_key = post(ports[f"{payload}/thresholds"], body.read_bytes(), ctype, ctype)
            print(f"{payload}: without thresholds {plain!r}\n{payload}: with thresholds    {with_key!r}")
            assert KEY.encode() in with_key or (ctype == "text/csv" and with_key.count(b",") == 2)
            assert KEY.encode() not in plain
        runs: dict[str, list[dict[str, float]]] = {}
        for rep in range(args.reps):
            for payload, (_, body, ctype) in models.items():
                order = ("plain", "thresholds") if rep % 2 == 0 else ("thresholds", "plain")
                for side in order:
                    name = f"{payload}/{side}"
                    got = wrk(ports[name], body, ctype, 8, args.seconds, accept=ctype,
                              server_pid=procs[name].pid)
                    runs.setdefault(name, []).append(got)
            print(f"rep {rep + 1}/{args.reps} done", flush=True)
        for name, measured in runs.items():
            results[name] = median_of(measured)
            results[name]["runs"] = [round(m["rps"], 1) for m in measured]
        for payload in models:
            a, b = results[f"{payload}/plain"], results[f"{payload}/thresholds"]
            results[f"{payload}/ratio"] = b["rps"] / a["rps"]
            print(f"{payload} c=8: without thresholds {a['rps']:,.0f} req/s (p99 {a['p99']:.2f} ms, "
                  f"{a.get('cpu_ms', float('nan')):.3f} ms CPU/req), with thresholds {b['rps']:,.0f} req/s "
                  f"(p99 {b['p99']:.2f} ms, {b.get('cpu_ms', float('nan')):.3f} ms CPU/req): "
                  f"{results[f'{payload}/ratio']:.3f}x", flush=True)
    finally:
        for proc in procs.values():
            stop(proc)
    return results


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__)
    options.set_defaults(seconds=5, reps=6)
    options.add_argument("--src", type=Path, default=DATA / "talkingdata")
    options.add_argument("--no-serving", action="store_true", help="only the quality table")
    args, _ = options.parse_known_args(argv)
    results: dict[str, Any] = {}
    found = quality(args)
    if found is not None:
        results["quality"] = found
    targets: dict[str, bool] = {}
    if not args.no_serving:
        results["serving"] = serving(args, Path(found["model_dir"]) if found is not None else None)
        for payload in ("csv1", "json1"):
            ratio = results["serving"].get(f"{payload}/ratio")
            if ratio is not None:
                name = f"1-row {payload[:-1].upper()} c=8 with thresholds within 5% of without"
                targets[name] = ratio >= 0.95
    if not results:
        return 0
    return report("gender_operating_points", results, targets)


if __name__ == "__main__":
    raise SystemExit(main())
