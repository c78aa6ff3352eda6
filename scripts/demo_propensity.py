"""Demo part 2: the propensity model (NeuMF) through the same `train` and `serve` contracts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from scripts.demo import http, opt_ml, package_and_serve, say, show, train
from training.propensity import synth


def run(work: Path) -> list[subprocess.Popen[bytes]]:
    base = work / "propensity" / "opt_ml"
    if base.exists():
        shutil.rmtree(base)
    say("propensity: generating 800 users x 300 merchants of synthetic interactions")
    inter, _, _ = synth.generate(800, 300, 20, seed=3)
    (base / "input/data/train").mkdir(parents=True)
    inter.to_csv(base / "input/data/train/interactions.csv", index=False)
    opt_ml(base, {"algorithm": "neumf", "factors": 16, "epochs": 6, "batch_size": 512, "patience": 3},
           {"train": {"ContentType": "text/csv"}})
    seconds = train(base, "propensity")
    manifest = json.loads((base / "model/model.json").read_text())
    m = manifest["metrics"]
    print(f"   trained in {seconds:.1f}s; leave-one-out HR@10 {m['hr@10']:.3f}, NDCG@10 {m['ndcg@10']:.3f} "
          f"(best epoch {manifest['training']['best_epoch']}); curves in output/data/training_curves.png")
    proc, url = package_and_serve(base, work / "propensity")
    show("score (user, item) pairs, JSON",
         *http("POST", url, json.dumps([{"user": "u0001", "item": "m0003"},
                                        {"user": "brand-new-user", "item": "m0003"}]).encode(),
               {"Content-Type": "application/json"}))
    show("top 5 merchants for a user, excluding ones already used, CSV out",
         *http("POST", url, b"user,k\nu0001,5\nu0002,5\n",
               {"Content-Type": "text/csv", "Accept": "text/csv"}))
    return [proc]
