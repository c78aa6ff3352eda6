"""Propensity serving speed: our `serve` (NumPy scorer) beside plain Keras model.predict.

Model: NeuMF, 32 predictive factors (MLP 128-64-32), trained one epoch on ml-1m (6,040 users,
3,706 items) through `train` (quality does not matter for speed). HTTP numbers come from wrk
on loopback against 2 gunicorn workers; the Keras reference is the in-process
``model.predict`` call on the same inputs (its best case: no HTTP, no parsing). Targets
(issue #3): 100 candidates of one user p99 <= 10 ms at c=1; >= 200,000 pairs/s at c=8 with
1,000-pair requests; top-10 over all 3,706 items p99 <= 20 ms.

    python -m bench.propensity_serving [--seconds 10] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import (
    BIN,
    DATA,
    RESULTS,
    free_port,
    median_of,
    post,
    report,
    start,
    stop,
    wait_ready,
    wrk,
)


def model_dir(work: Path) -> Path | None:
    base = work / "neumf32" / "opt_ml"
    if (base / "model" / "model.json").exists():
        return base
    src = DATA / "ml-1m-ncf" / "ml-1m.train.rating"
    if not src.exists():
        return None
    (base / "input/data/train").mkdir(parents=True, exist_ok=True)
    link = base / "input/data/train/train.tsv"
    if not link.exists():
        link.symlink_to(src)
    (base / "input/config").mkdir(parents=True, exist_ok=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(
        {"algorithm": "neumf", "factors": "32", "epochs": "1", "batch_size": "4096", "validation": "none"}))
    subprocess.run([str(BIN / "train")], env={**os.environ, "SM_BASE_DIR": str(base)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return base


def keras_times(model_path: Path, users: np.ndarray, items: np.ndarray, reps: int = 200) -> dict[str, float]:
    import keras

    from training.propensity import networks

    networks.custom_layers()
    net = keras.saving.load_model(model_path)
    u, i = users.astype(np.int32)[:, None], items.astype(np.int32)[:, None]
    net.predict([u, i], verbose=0)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        net.predict([u, i], verbose=0, batch_size=max(32, u.shape[0]))
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50": statistics.median(times), "p99": times[int(0.99 * (len(times) - 1))],
            "pairs_per_s_1_thread_of_calls": u.shape[0] / (statistics.median(times) / 1000)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=RESULTS / "work" / "propensity_serving")
    args, _ = parser.parse_known_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = model_dir(args.workdir)
    if base is None:
        print("skipped: ml-1m-ncf not found (set MLSHIP_DATA)")
        return 0
    model = base / "model"
    users = json.loads((model / "users.json").read_text())
    items = json.loads((model / "items.json").read_text())
    rng = np.random.default_rng(3)
    u0 = users[int(rng.integers(len(users)))]
    cand = [items[j] for j in rng.choice(len(items), 100, replace=False)]
    bodies = {
        "pairs100": [{"user": u0, "item": it} for it in cand],
        "pairs1000": [{"user": users[int(rng.integers(len(users)))],
                       "item": items[int(rng.integers(len(items)))]} for _ in range(1000)],
        "top10_all": {"user": u0, "k": 10},
    }
    paths = {}
    for name, body in bodies.items():
        paths[name] = args.workdir / f"{name}.json"
        paths[name].write_text(json.dumps(body))
    port = free_port()
    proc = start([str(BIN / "serve")], {"SM_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
                                        "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SM_LOG_LEVEL": "WARNING"},
                 args.workdir / "serve.log")
    t0 = time.monotonic()
    results: dict[str, Any] = {"model": "neumf factors 32 (mlp 128-64-32), ml-1m vocab",
                               "workers": 2, "seconds_per_point": args.seconds, "reps": args.reps}
    try:
        wait_ready(port)
        results["ping_ready_seconds"] = round(time.monotonic() - t0, 2)
        check = json.loads(post(port, paths["top10_all"].read_bytes(), "application/json"))
        assert len(check["predictions"][0]["items"]) == 10
        for name, conns in (("pairs100", 1), ("pairs1000", 8), ("top10_all", 1), ("top10_all", 8)):
            runs = [wrk(port, paths[name], "application/json", conns, args.seconds) for _ in range(args.reps)]
            med = median_of(runs)
            pairs = {"pairs100": 100, "pairs1000": 1000, "top10_all": len(items)}[name]
            med["pairs_per_s"] = med["rps"] * pairs
            results[f"ours/{name}/c{conns}"] = med
            print(f"ours  {name:10s} c={conns}: {med['rps']:8.1f} req/s p50 {med['p50']:6.2f} ms "
                  f"p99 {med['p99']:6.2f} ms  pairs/s {med['pairs_per_s']:10.0f}", flush=True)
    finally:
        stop(proc)
    uidx = users.index(u0)
    cand_idx = np.array([items.index(c) for c in cand])
    results["keras/pairs100"] = keras_times(model / "model.keras", np.full(100, uidx), cand_idx)
    big_u = np.array([users.index(r["user"]) for r in bodies["pairs1000"]])  # type: ignore[index]
    big_i = np.array([items.index(r["item"]) for r in bodies["pairs1000"]])  # type: ignore[index]
    results["keras/pairs1000"] = keras_times(model / "model.keras", big_u, big_i)
    results["keras/all_items"] = keras_times(model / "model.keras", np.full(len(items), uidx),
                                             np.arange(len(items)), reps=100)
    for key in ("keras/pairs100", "keras/pairs1000", "keras/all_items"):
        r = results[key]
        print(f"keras {key[6:]:10s} in-process: p50 {r['p50']:6.2f} ms p99 {r['p99']:6.2f} ms", flush=True)
    targets = {
        "100 candidates p99 <= 10 ms at c=1": results["ours/pairs100/c1"]["p99"] <= 10,
        ">= 200,000 pairs/s at c=8 (1,000-pair requests)":
            results["ours/pairs1000/c8"]["pairs_per_s"] >= 200_000,
        "top-10 of 3,706 items p99 <= 20 ms (c=1)": results["ours/top10_all/c1"]["p99"] <= 20,
        "/ping ready within 30 s": results["ping_ready_seconds"] <= 30,
    }
    return report("propensity_serving", results, targets)


if __name__ == "__main__":
    raise SystemExit(main())
