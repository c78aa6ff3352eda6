"""Serving benchmark: our `serve` beside the canonical BYO-style server, same booster, same run.

Model: XGBoost binary:logistic, 200 trees, depth 6, 60 float features, trained through our
`train` on 200k synthetic rows. Payloads: 1-row and 1,000-row CSV without a header. wrk on
loopback, 1 thread, closed loop; each point REPS times (medians). Then raw-record JSON
requests against the gender pipeline model. Targets (issue #2): 1-row p99 <= 5 ms at c=1,
>= 800 req/s at c=8; 1,000 rows >= 110,000 rows/s at c=8.

    python -m bench.serve_gender [--seconds 10] [--reps 3]
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import BIN, free_port, median_of, parser, post, report, start, stop, wait_ready, wrk
from training.gender import synth


def train_numeric(work: Path, rows: int) -> Path:
    base = work / "numeric" / "opt_ml"
    if (base / "model" / "model.json").exists():
        return base
    data = base / "input/data/train"
    data.mkdir(parents=True, exist_ok=True)
    synth.numeric(rows, 60, seed=1).to_csv(data / "train.csv", index=False, header=False)
    cfg = base / "input/config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "hyperparameters.json").write_text(json.dumps(
        {"num_round": "200", "max_depth": "6", "eta": "0.1", "validation_fraction": "0.05",
         "log_every": "50", "min_child_weight": "0"}))
    t0 = time.monotonic()
    import subprocess

    subprocess.run([str(BIN / "train")], env={**os.environ, "SM_BASE_DIR": str(base)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"trained the 200-tree numeric model in {time.monotonic() - t0:.1f}s", flush=True)
    return base


def train_devices(work: Path, rows: int) -> Path:
    base = work / "devices" / "opt_ml"
    if (base / "model" / "model.json").exists():
        return base
    synth.write(synth.generate(rows, seed=3), base / "input/data/train/d.csv", "csv")
    cfg = base / "input/config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "hyperparameters.json").write_text(json.dumps({"num_round": "200", "max_depth": "6"}))
    import subprocess

    subprocess.run([str(BIN / "train")], env={**os.environ, "SM_BASE_DIR": str(base)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return base


def payloads(work: Path) -> dict[str, Path]:
    rng = np.random.default_rng(5)
    out = {}
    for rows in (1, 1000):
        x = rng.normal(size=(rows, 60)).astype(np.float32)
        path = work / f"rows{rows}.csv"
        path.write_text("\n".join(",".join(f"{v:.6f}" for v in row) for row in x) + "\n")
        out[f"csv{rows}"] = path
    return out


def record_payloads(work: Path) -> dict[str, Path]:
    out = {}
    frame = synth.generate(1000, seed=9).drop(columns=["gender"])
    records = json.loads(frame.to_json(orient="records"))
    for rows in (1, 1000):
        path = work / f"records{rows}.json"
        path.write_text(json.dumps(records[:rows]))
        out[f"json{rows}"] = path
    return out


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__)
    options.add_argument("--rows", type=int, default=200_000)
    args = options.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    numeric = train_numeric(work, args.rows)
    devices = train_devices(work, 20000)
    bodies = payloads(work)

    ours_port, ref_port, raw_port = free_port(), free_port(), free_port()
    ours = start([str(BIN / "serve")], {"SM_BASE_DIR": str(numeric), "SAGEMAKER_BIND_TO_PORT": str(ours_port),
                                        "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MODEL_THREADS": "1",
                                        "SM_LOG_LEVEL": "WARNING"}, work / "ours.log")
    ref = start([str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{ref_port}", "bench.reference_byo:app"],
                {"REFERENCE_MODEL": str(numeric / "model" / "xgboost-model.ubj"),
                 "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, work / "reference.log")
    raw = start([str(BIN / "serve")], {"SM_BASE_DIR": str(devices), "SAGEMAKER_BIND_TO_PORT": str(raw_port),
                                       "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SM_LOG_LEVEL": "WARNING"},
                work / "raw.log")
    results: dict[str, Any] = {"env": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                       "seconds_per_point": args.seconds, "reps": args.reps,
                                       "workers": 2, "model": "xgboost 200 trees depth 6, 60 features"}}
    try:
        for port in (ours_port, ref_port, raw_port):
            wait_ready(port)
        # Both servers must agree before any number counts.
        one = bodies["csv1000"].read_bytes()
        lines = post(ours_port, one, "text/csv", "text/csv").decode().splitlines()
        ours_score = [float(p) if lab == "1" else 1 - float(p) for lab, p in (x.split(",") for x in lines)]
        ref_score = [float(v) for v in post(ref_port, one, "text/csv").decode().split()]
        assert len(ours_score) == 1000 and np.allclose(ours_score, ref_score, atol=1e-5), "servers disagree"
        points = [("csv1", 1), ("csv1", 8), ("csv1000", 1), ("csv1000", 8)]
        for name, conns in points:
            for label, port in (("reference", ref_port), ("ours", ours_port)):
                runs = []
                for _ in range(args.reps):
                    runs.append(wrk(port, bodies[name], "text/csv", conns, args.seconds, "text/csv"))
                med = median_of(runs)
                rows = 1000 if name == "csv1000" else 1
                med["rows_per_s"] = med["rps"] * rows
                results[f"{label}/{name}/c{conns}"] = med
                print(f"{label:9s} {name:8s} c={conns}: {med['rps']:8.1f} req/s  p50 {med['p50']:7.2f} ms"
                      f"  p99 {med['p99']:7.2f} ms  rows/s {med['rows_per_s']:10.0f}", flush=True)
        for name, path in record_payloads(work).items():
            for conns in (1, 8):
                runs = [wrk(raw_port, path, "application/json", conns, args.seconds)
                        for _ in range(args.reps)]
                med = median_of(runs)
                med["rows_per_s"] = med["rps"] * (1000 if name == "json1000" else 1)
                results[f"ours-raw-records/{name}/c{conns}"] = med
                print(f"raw JSON  {name:8s} c={conns}: {med['rps']:8.1f} req/s  p50 {med['p50']:7.2f} ms"
                      f"  p99 {med['p99']:7.2f} ms  rows/s {med['rows_per_s']:10.0f}", flush=True)
    finally:
        for proc in (ours, ref, raw):
            stop(proc)
    targets = {
        "1-row p99 <= 5 ms at c=1": results["ours/csv1/c1"]["p99"] <= 5.0,
        "1-row >= 800 req/s at c=8": results["ours/csv1/c8"]["rps"] >= 800,
        "1000-row >= 110,000 rows/s at c=8": results["ours/csv1000/c8"]["rows_per_s"] >= 110_000,
    }
    return report("serve_gender", results, targets)


if __name__ == "__main__":
    raise SystemExit(main())
