"""Serving benchmark: our `serve` as shipped beside two reference servers, same booster, same run.

Model: XGBoost binary:logistic, 200 trees, depth 6, 60 float features, trained through our
`train` on 200k synthetic rows. Servers, all with 2 workers: ours with the image's DEFAULT
settings (log level INFO with its access lines, metrics, the portal; nothing tuned), the
canonical BYO sample (pandas + DMatrix) and a lean Flask + NumPy + inplace_predict server.
Payloads: 1-row and 1,000-row CSV without a header (Accept: text/csv), GET /ping, and raw
device records as JSON against the gender pipeline model. wrk on loopback, 1 thread, closed
loop, keep-alive offered (the sync references close each connection); every point REPS times,
interleaved server by server, medians; each server's CPU per request from /proc.
Targets (issue #14): 1-row CSV at c=8 >= 2x the lean server and >= 75% of our own /ping rate,
p99 <= 5 ms at c=8 and <= 2 ms at c=1; 1-row JSON record at c=8 >= 50% of the 1-row CSV rate;
1,000-row CSV at c=8 >= 1.3x the lean server.

    python -m bench.serve_gender [--seconds 10] [--reps 3]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import BIN, free_port, median_of, parser, post, report, start, stop, wait_ready, wrk
from container.settings import Settings
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
    records = record_payloads(work)
    booster = str(numeric / "model" / "xgboost-model.ubj")
    repo = str(Path(__file__).resolve().parent.parent)
    ports = {name: free_port() for name in ("ours", "byo", "lean", "raw")}
    # Whatever the calling shell has set, our servers run on the image's defaults.
    defaults: dict[str, str | None] = {name: None for name in Settings.variables()}
    reference = {"REFERENCE_MODEL": booster, "PYTHONPATH": repo}
    def ours(name: str, model: Path) -> subprocess.Popen[bytes]:
        env = {**defaults, "SM_BASE_DIR": str(model), "SAGEMAKER_BIND_TO_PORT": str(ports[name])}
        return start([str(BIN / "serve")], env, work / f"{name}.log")

    procs = {
        "ours": ours("ours", numeric),
        "raw": ours("raw", devices),
        "byo": start([str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{ports['byo']}",
                      "bench.reference_byo:app"], dict(reference), work / "byo.log"),
        "lean": start([str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{ports['lean']}",
                       "bench.reference_lean:app"], dict(reference), work / "lean.log"),
    }
    results: dict[str, Any] = {"env": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                       "seconds_per_point": args.seconds, "reps": args.reps, "workers": 2,
                                       "settings": "image defaults (only SM_BASE_DIR and the port set)",
                                       "model": "xgboost 200 trees depth 6, 60 features"}}
    try:
        for port in ports.values():
            wait_ready(port)
        # All servers must agree before any number counts.
        one = bodies["csv1000"].read_bytes()
        lines = post(ports["ours"], one, "text/csv", "text/csv").decode().splitlines()
        ours_score = [float(p) if lab == "1" else 1 - float(p) for lab, p in (x.split(",") for x in lines)]
        for ref in ("byo", "lean"):
            ref_score = [float(v) for v in post(ports[ref], one, "text/csv").decode().split()]
            agree = len(ours_score) == 1000 and np.allclose(ours_score, ref_score, atol=1e-5)
            assert agree, f"{ref} disagrees with ours"
        # (server, payload, connections); "ping" is GET /ping
        csv_points = (("ping", 8), ("csv1", 1), ("csv1", 8), ("csv1000", 8))
        points = [(server, name, conns) for name, conns in csv_points for server in ("lean", "byo", "ours")]
        points += [("raw", name, conns) for name, conns in (("json1", 1), ("json1", 8), ("json1000", 8))]
        runs: dict[str, list[dict[str, float]]] = {}
        for rep in range(args.reps):  # interleaved, so a drifting machine moves every server alike
            for server, name, conns in points:
                body = None if name == "ping" else bodies.get(name) or records[name]
                ctype = "application/json" if name.startswith("json") else "text/csv"
                got = wrk(ports[server], body, ctype, conns, args.seconds,
                          accept="text/csv" if ctype == "text/csv" else "application/json",
                          path="/ping" if body is None else "/invocations", server_pid=procs[server].pid)
                runs.setdefault(f"{server}/{name}/c{conns}", []).append(got)
            print(f"rep {rep + 1}/{args.reps} done", flush=True)
        print(f"{'server':6s} {'point':9s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'rows/s':>10s} "
              f"{'CPU ms/req':>10s}")
        for key, measured in runs.items():
            med = median_of(measured)
            med["rows_per_s"] = med["rps"] * (1000 if key.split("/")[1].endswith("1000") else 1)
            results[key] = med
            server, name, conns = key.split("/")
            print(f"{server:6s} {name + ' ' + conns:9s} {med['rps']:9.0f} {med['p50']:8.2f} "
                  f"{med['p99']:8.2f} {med['rows_per_s']:10.0f} {med.get('cpu_ms', float('nan')):10.3f}",
                  flush=True)
    finally:
        for proc in procs.values():
            stop(proc)
    r = results
    csv1 = r["ours/csv1/c8"]["rps"]
    targets = {
        "1-row CSV c=8 >= 2x lean": csv1 >= 2 * r["lean/csv1/c8"]["rps"],
        "1-row CSV c=8 >= 75% of our /ping": csv1 >= 0.75 * r["ours/ping/c8"]["rps"],
        "1-row CSV p99 <= 5 ms at c=8": r["ours/csv1/c8"]["p99"] <= 5.0,
        "1-row CSV p99 <= 2 ms at c=1": r["ours/csv1/c1"]["p99"] <= 2.0,
        "1-row JSON record c=8 >= 50% of 1-row CSV": r["raw/json1/c8"]["rps"] >= 0.5 * csv1,
        "1,000-row CSV c=8 >= 1.3x lean":
            r["ours/csv1000/c8"]["rows_per_s"] >= 1.3 * r["lean/csv1000/c8"]["rows_per_s"],
    }
    return report("serve_gender", results, targets)


if __name__ == "__main__":
    raise SystemExit(main())
