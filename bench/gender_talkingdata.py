"""Gender model quality on the real TalkingData files, XGBoost beside logistic regression.

Reads ../shared/data/talkingdata (or $MLSHIP_DATA/talkingdata); skips with a message when it is
absent (the data may not be redistributed). Builds device records with the TalkingData loader,
splits them once (seeded, stratified 80/20), and trains both algorithms through the real
`train` contract on the same train/validation channels. The shared copy has brand/model for
all devices but events for ~9% of them and no app_events, so expect a weak signal (brand/model
alone gives ROC AUC ~0.53).

    python -m bench.gender_talkingdata
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import BIN, DATA, RESULTS, save
from training.gender import synth, talkingdata

RUNS: dict[str, dict[str, Any]] = {
    "xgboost": {"algorithm": "xgboost", "num_round": 300, "max_depth": 6, "eta": 0.05,
                "min_child_weight": 5, "subsample": 0.8, "colsample_bytree": 0.8,
                "early_stopping_rounds": 30, "log_every": 50},
    "logreg": {"algorithm": "logreg", "C": 0.1, "max_iter": 2000},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DATA / "talkingdata")
    parser.add_argument("--workdir", type=Path, default=RESULTS / "work" / "talkingdata")
    args, _ = parser.parse_known_args(argv)
    if not (args.src / "gender_age_train.csv").exists():
        print(f"skipped: no TalkingData files under {args.src} (set MLSHIP_DATA to the shared data folder)")
        return 0
    records = talkingdata.load(args.src)
    rng = np.random.default_rng(42)
    is_val = np.zeros(len(records), dtype=bool)
    for _, idx in records.groupby("gender").indices.items():
        chosen = rng.choice(idx, size=round(len(idx) * 0.2), replace=False)
        is_val[chosen] = True
    print(f"{len(records)} devices ({int(is_val.sum())} held out), "
          f"{(records.event_timestamps.map(len) > 0).mean():.1%} with events", flush=True)
    results: dict[str, Any] = {"devices": len(records), "validation": int(is_val.sum())}
    for name, hps in RUNS.items():
        base = args.workdir / name / "opt_ml"
        synth.write(records[~is_val], base / "input/data/train/devices.parquet", "parquet")
        synth.write(records[is_val], base / "input/data/validation/devices.parquet", "parquet")
        (base / "input/config").mkdir(parents=True, exist_ok=True)
        (base / "input/config/hyperparameters.json").write_text(
            json.dumps({k: str(v) for k, v in hps.items()}))
        started = time.monotonic()
        proc = subprocess.run([str(BIN / "train")], env={**os.environ, "SM_BASE_DIR": str(base)},
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        manifest = json.loads((base / "model/model.json").read_text())
        metrics = manifest["metrics"]
        results[name] = {"metrics": metrics, "seconds": round(time.monotonic() - started, 1),
                         "hyperparameters": hps, "features": manifest["input"]["n_features"]}
        print(f"{name:8s} ROC AUC {metrics['roc_auc']:.4f}  PR AUC {metrics['pr_auc']:.4f}  "
              f"logloss {metrics['logloss']:.4f}  accuracy {metrics['accuracy']:.4f}  "
              f"({results[name]['seconds']}s, {manifest['input']['n_features']} features)", flush=True)
    print(f"results: {save('gender_talkingdata', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
