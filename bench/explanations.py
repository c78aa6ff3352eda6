"""Explanations: what an explained prediction costs, next to the same prediction unexplained.

    python -m bench explanations [--seconds 10] [--reps 3] [--batch-rows 10000]

Online: one raw device record as JSON to /invocations at c=1, plain and with
``X-Amzn-SageMaker-Enable-Explanations: `true``` (Clarify's envelope, every record explained),
for an XGBoost and a logistic-regression device model, the sides measured in alternation on the
same `serve`. Target (issue 28): the explained request's p99 <= 5 ms.

Batch: the portal's batch job over ``--batch-rows`` raw device records (JSON Lines in, JSON Lines
out), with ``"explain": true`` and without, in the order plain, explained, explained, plain ...
on one fresh `serve` per job: rows/s from create to SUCCEEDED and the server's CPU us per row.
The image's defaults throughout (INFO logs, access lines, MLSHIP_FAST on, 2 workers).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import BIN, free_port, parser, report, start, stop, tree_cpu, wait_ready, wrk
from bench.portal import _call
from training.gender import synth

EXPLAIN = {"X-Amzn-SageMaker-Enable-Explanations": "`true`"}
P99_TARGET_MS = 5.0


def _train(work: Path, algorithm: str, rows: int) -> Path:
    base = work / f"explain-{algorithm}" / "opt_ml"
    if (base / "model" / "model.json").exists():
        return base
    synth.write(synth.generate(rows, seed=3), base / "input/data/train/d.csv", "csv")
    (base / "input/config").mkdir(parents=True, exist_ok=True)
    trees = {"num_round": "200", "max_depth": "6"} if algorithm == "xgboost" else {}
    hps = {"algorithm": algorithm, **trees}
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hps))
    subprocess.run([str(BIN / "train")], env={**os.environ, "SM_BASE_DIR": str(base)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return base


def online(models: dict[str, Path], work: Path, seconds: int, reps: int) -> dict[str, Any]:
    body = work / "explain-record1.json"
    body.write_text(synth.generate(1, seed=9).drop(columns=["gender"]).to_json(orient="records"))
    out: dict[str, Any] = {}
    for algorithm, base in models.items():
        port = free_port()
        proc = start([str(BIN / "serve")], {
            "SM_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MLAPP_DATA_DIR": str(work / f"explain-{algorithm}-data"),
            "MLAPP_JOB_WORKER": "false"}, work / f"explain-{algorithm}.log")
        try:
            wait_ready(port)
            runs: dict[str, list[dict[str, float]]] = {"plain": [], "explained": []}
            for _ in range(reps):
                for side, headers in (("plain", None), ("explained", EXPLAIN)):
                    runs[side].append(wrk(port, body, "application/json", 1, seconds, headers=headers))
            med = {side: {k: statistics.median(r[k] for r in v) for k in ("rps", "p50", "p99")}
                   for side, v in runs.items()}
            out[algorithm] = med
            print(f"{algorithm:<8} json1 c=1  plain {med['plain']['rps']:,.0f} req/s p50 "
                  f"{med['plain']['p50']:.2f} ms p99 {med['plain']['p99']:.2f} ms | explained "
                  f"{med['explained']['rps']:,.0f} req/s p50 {med['explained']['p50']:.2f} ms p99 "
                  f"{med['explained']['p99']:.2f} ms", flush=True)
        finally:
            stop(proc)
    return out


def _records(work: Path, rows: int) -> Path:
    path = work / f"explain-batch-{rows}.jsonl"
    if not path.exists():
        synth.write(synth.generate(rows, seed=11).drop(columns=["gender"]), path, "jsonl")
    return path


def _job(base: Path, folder: Path, path: Path, explain: bool) -> tuple[float, float]:
    """One batch job on a fresh `serve`: rows/s from create to SUCCEEDED, server CPU us/row."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    repo = folder / "models"
    shutil.copytree(base / "model", repo / "gender" / "v1")
    port = free_port()
    proc = start([str(BIN / "serve")], {
        "SM_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "MLAPP_DATABASE_URL": f"sqlite:///{folder / 'store.db'}", "MLAPP_MODEL_REPOSITORY": str(repo),
        "MLAPP_DATA_DIR": str(folder / "data"), "MLAPP_ALLOWED_ROOTS": f"{path.parent}:{folder}"},
        folder / "serve.log")
    api = "/api/providers/prediction"
    record = json.loads(path.open().readline())
    try:
        wait_ready(port)
        for _ in range(4):  # both workers load the version (and explain once) before the clock
            _call(port, f"{api}/invoke", {"model": "gender", "input": [record], "explain": explain})
        cpu, started = tree_cpu(proc.pid), time.monotonic()
        pid = _call(port, f"{api}/create", {"model": "gender", "input": {"location": str(path)},
                                            "output_location": str(folder / "results"),
                                            "explain": explain})["prediction_id"]
        while (state := _call(port, f"{api}/check?prediction_id={pid}&limit=1"))["status"] not in (
                "SUCCEEDED", "FAILED", "CANCELLED"):
            time.sleep(0.1)
        seconds, cpu = time.monotonic() - started, tree_cpu(proc.pid) - cpu
        assert state["status"] == "SUCCEEDED", state
        line = json.loads((folder / "results" / "part-000000.jsonl").open().readline())
        assert ("explanation" in line) == explain, line
        return state["rows_done"] / seconds, cpu / state["rows_done"] * 1e6
    finally:
        stop(proc)


def batch(base: Path, work: Path, rows: int, reps: int) -> dict[str, Any]:
    path = _records(work, rows)
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "explained": []}
    for rep in range(reps):
        order = [("plain", False), ("explained", True)]
        for side, explain in order if rep % 2 == 0 else order[::-1]:
            got = _job(base, work / f"explain-job-{side}", path, explain)
            runs[side].append(got)
            print(f"  batch {rows} rows {side}: {got[0]:,.0f} rows/s, {got[1]:.1f} us CPU/row", flush=True)
    med = {side: {"rows_per_s": statistics.median(r[0] for r in v),
                  "cpu_us_per_row": statistics.median(r[1] for r in v)} for side, v in runs.items()}
    print(f"batch {rows} rows: plain {med['plain']['rows_per_s']:,.0f} rows/s | explained "
          f"{med['explained']['rows_per_s']:,.0f} rows/s "
          f"({med['explained']['rows_per_s'] / med['plain']['rows_per_s']:.2f}x)", flush=True)
    return {"rows": rows, **med}


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__)
    options.add_argument("--batch-rows", type=int, default=10_000)
    options.add_argument("--train-rows", type=int, default=20_000)
    args = options.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    models = {a: _train(work, a, args.train_rows) for a in ("xgboost", "logreg")}
    results: dict[str, Any] = {"seconds": args.seconds, "reps": args.reps,
                               "online": online(models, work, args.seconds, args.reps)}
    if args.batch_rows:
        results["batch"] = batch(models["xgboost"], work, args.batch_rows, args.reps)
    targets = {f"explained 1-record JSON c=1 p99 <= {P99_TARGET_MS} ms ({a})":
               results["online"][a]["explained"]["p99"] <= P99_TARGET_MS for a in models}
    return report("explanations", results, targets)
