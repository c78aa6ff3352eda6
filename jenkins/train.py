"""The pipeline's Train stage: run the built image's `train` exactly as SageMaker would, on a local
/opt/ml tree, and pack /opt/ml/model into model.tar.gz for the gate and the deploy.

    python -m jenkins.train --image mlship:abc123 --workdir build/train \
        [--data DIR (a train/ and optional validation/ folder)] [--hp algorithm=xgboost ...]

Without --data, synthetic device records (the project's generator) are used, so the pipeline runs
anywhere. A failed training prints /opt/ml/output/failure and exits 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path


def prepare(workdir: Path, data: Path | None, hyperparameters: dict[str, str], rows: int) -> Path:
    base = workdir / "opt_ml"
    if base.exists():
        shutil.rmtree(base)
    (base / "input/config").mkdir(parents=True)
    channels: dict[str, dict[str, str]] = {}
    for channel in ("train", "validation"):
        target = base / "input/data" / channel
        if data is not None and (data / channel).is_dir():
            shutil.copytree(data / channel, target)
            channels[channel] = {}
    if data is None:
        from training.gender import synth

        frame = synth.generate(rows, seed=7)
        cut = int(rows * 0.8)
        synth.write(frame.iloc[:cut], base / "input/data/train/devices.csv", "csv")
        synth.write(frame.iloc[cut:], base / "input/data/validation/devices.jsonl", "jsonl")
        channels = {"train": {"ContentType": "text/csv"},
                    "validation": {"ContentType": "application/jsonlines"}}
    if "train" not in channels:
        raise SystemExit(f"train: {data} has no train/ folder")
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hyperparameters))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps(channels))
    (base / "input/config/resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
    return base  # no chmod: the image starts as root and hands /opt/ml's folders to its user


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jenkins.train", description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--rows", type=int, default=20000, help="synthetic records when no --data")
    parser.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    hps = dict(h.split("=", 1) for h in args.hp if "=" in h)
    base = prepare(args.workdir, args.data, hps, args.rows)
    run = subprocess.run(["podman", "run", "--rm", "-v", f"{base.resolve()}:/opt/ml", args.image, "train"])
    if run.returncode != 0:
        failure = base / "output" / "failure"
        reason = failure.read_text().splitlines()[0] if failure.exists() else "no failure file"
        print(f"train: FAILED (exit {run.returncode}): {reason}", file=sys.stderr)
        return 1
    tar_path = args.workdir / "model.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for entry in sorted((base / "model").iterdir()):
            tar.add(entry, arcname=entry.name)
    print(json.dumps({"model_dir": str(base / "model"), "model_tar": str(tar_path),
                      "metrics": json.loads((base / "model" / "model.json").read_text())["metrics"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
