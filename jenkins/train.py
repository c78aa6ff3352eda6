"""The pipeline's Train stages: run the built image's `train` for one model family, exactly as
SageMaker would, and leave the model directory and model.tar.gz for the gate and the deploys.

    python -m jenkins.train --family gender --image mlship:abc123 --workdir build/train/gender \
        [--data DIR (train/ and optional validation/)] [--hyperparameters "num_round=50 max_depth=4"]
    python -m jenkins.train --family propensity ... --on sagemaker --role ARN --output s3://bucket/train

The families are those training/ declares (jenkins/families.py); each declaration holds its
synthetic data set, its CI hyperparameters and the gate's floors. `--on local` (the default) runs
`podman run IMAGE train` on a local /opt/ml tree. `--on sagemaker` runs the same image as a
SageMaker training job through `python -m deploy sagemaker-train` (the sagemaker SDK's
ModelTrainer), then downloads and unpacks the job's model.tar.gz into the same place. Without
--data (or with FAMILY=FOLDER items that do not name this family), the family's synthetic
generator makes the data, so the pipeline runs anywhere. Both modes end with
WORKDIR/opt_ml/model/ (model.json with the validation metrics) and WORKDIR/model.tar.gz, and print
one JSON line. A failed training prints the first line of /opt/ml/output/failure; exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jenkins import families
from training.families import default


def prepare(workdir: Path, data: Path | None, hyperparameters: dict[str, str], rows: int,
            family: str) -> Path:
    """A fresh /opt/ml tree under WORKDIR/opt_ml with config and channels; returns its path."""
    base = workdir / "opt_ml"
    if base.exists():
        shutil.rmtree(base)
    (base / "input/config").mkdir(parents=True)
    channels: dict[str, dict[str, str]] = {}
    if data is None:
        channels = families.get(family).write_synthetic(base, rows)
    else:
        for channel in ("train", "validation"):
            if (data / channel).is_dir():
                shutil.copytree(data / channel, base / "input/data" / channel)
                channels[channel] = {}
    if "train" not in channels:
        raise SystemExit(f"train: {data} has no train/ folder")
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hyperparameters))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps(channels))
    (base / "input/config/resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
    return base  # no chmod: the image starts as root and hands /opt/ml's folders to its user


def hyperparameters_for(family: str, text: str, pairs: Sequence[str]) -> dict[str, str]:
    """The family's declared CI hyperparameters, replaced by its items of "k=v family.k=v" text
    (jenkins.families.for_family: the pipeline's HYPERPARAMETERS) and repeated --hp k=v."""
    items = [*families.for_family(text, family), *pairs]
    hps = {} if items else dict(families.get(family).ci_hyperparameters)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"train: hyperparameter {item!r} is not KEY=VALUE")
        hps[key] = value
    return hps


def train_local(image: str, base: Path) -> int:
    run = subprocess.run(["podman", "run", "--rm", "-v", f"{base.resolve()}:/opt/ml", image, "train"])
    if run.returncode != 0:
        failure = base / "output" / "failure"
        reason = failure.read_text().splitlines()[0] if failure.exists() else "no failure file"
        print(f"train: FAILED (exit {run.returncode}): {reason}", file=sys.stderr)
        return 1
    return 0


def _safe_extract(tar_path: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        tar.extractall(target, filter="data")  # refuses absolute paths, .. and device files


def train_sagemaker(args: argparse.Namespace, base: Path, hps: dict[str, str]) -> int:
    """The helper's `deploy sagemaker-train` (the SDK's ModelTrainer), then its model.tar.gz here."""
    cmd = [sys.executable, "-m", "deploy", "sagemaker-train", "--image", args.image,
           "--data", str(base / "input/data"), "--role", args.role, "--output", args.output,
           "--job-name", f"mlship-{args.family}", "--instance-type", args.instance_type]
    cmd += [f"--hp={k}={v}" for k, v in hps.items()]
    run = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(run.stderr)
    if run.returncode != 0:
        print(f"train: FAILED: the SageMaker training job did not finish (exit {run.returncode})",
              file=sys.stderr)
        return 1
    job: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    uri = str(job["model_tar"])
    with tempfile.TemporaryDirectory(prefix="wt-train-") as tmp:
        tar = Path(tmp) / "model.tar.gz"
        if uri.startswith("s3://"):
            import boto3

            bucket, _, key = uri[len("s3://"):].partition("/")
            boto3.client("s3", region_name=os.environ.get("AWS_REGION")).download_file(bucket, key, str(tar))
        else:
            shutil.copy(uri, tar)
        _safe_extract(tar, base / "model")
    if not (base / "model" / "model.json").is_file():
        print(f"train: FAILED: {uri} holds no model.json", file=sys.stderr)
        return 1
    return 0


def pack(model_dir: Path, tar_path: Path) -> None:
    with tarfile.open(tar_path, "w:gz") as tar:
        for entry in sorted(model_dir.iterdir()):
            tar.add(entry, arcname=entry.name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jenkins.train", description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=families.names(), default=default().name)
    parser.add_argument("--image", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--data", default="", help="a folder with train/ [validation/], or FAMILY=FOLDER "
                        "items (a family not named: synthetic); empty: synthetic")
    parser.add_argument("--rows", type=int, default=20000, help="synthetic records when no --data")
    parser.add_argument("--hyperparameters", default="", metavar='"K=V K=V"',
                        help="replace the family's CI hyperparameters; items may name it (FAMILY.K=V)")
    parser.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--on", choices=("local", "sagemaker"), default="local")
    parser.add_argument("--role", default="", help="SageMaker execution role (--on sagemaker)")
    parser.add_argument("--output", default="", help="s3://bucket/prefix of the job's model (--on sagemaker)")
    parser.add_argument("--instance-type", default="ml.m5.xlarge")
    args = parser.parse_args(argv)
    hps = hyperparameters_for(args.family, args.hyperparameters, args.hp)
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = families.data_for(args.data, args.family)
    base = prepare(args.workdir, Path(data) if data else None, hps, args.rows, args.family)
    if args.on == "sagemaker":
        if not (args.role and args.output.startswith("s3://")):
            parser.error("--on sagemaker needs --role ARN and --output s3://bucket/prefix")
        status = train_sagemaker(args, base, hps)
    else:
        status = train_local(args.image, base)
    if status:
        return status
    tar_path = args.workdir / "model.tar.gz"
    pack(base / "model", tar_path)
    manifest = json.loads((base / "model" / "model.json").read_text())
    print(json.dumps({"family": args.family, "on": args.on, "model_dir": str(base / "model"),
                      "model_tar": str(tar_path), "algorithm": manifest.get("algorithm"),
                      "metrics": manifest.get("metrics", {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
