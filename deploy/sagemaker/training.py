"""Run the image's `train` as a SageMaker training job through the SDK's ModelTrainer.

    python -m deploy sagemaker-train --image URI --data DIR_OR_S3 --role ARN --output s3://b/p  (a job)
    python -m deploy sagemaker-train --image mlship:dev --data DIR --local-root DIR            (local)

`--data` holds a train/ and optionally a validation/ folder (local paths or S3 prefixes). With
`--local-root` the SDK's local-container mode runs the image through a Docker API (podman's
service here) and docker compose, as SageMaker would, and leaves model.tar.gz under that root;
otherwise a real training job writes model.tar.gz under --output. No chmod on the client side:
the image hands /opt/ml's folders to its own user. Every AWS client (the job's, and in local mode those
for S3 data or an ECR login) comes from `Aws.connect`, for --region and --endpoint-url."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import warnings
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.sagemaker.aws import Aws

CHANNELS = ("train", "validation")


def _channels(data: str) -> list[Any]:
    from sagemaker.core.training.configs import InputData

    if data.startswith("s3://"):
        return [InputData(channel_name=c, data_source=f"{data.rstrip('/')}/{c}/") for c in CHANNELS]
    root = Path(data)
    found = [c for c in CHANNELS if (root / c).is_dir()]
    if "train" not in found:
        raise DeployError(f"--data {data} has no train/ folder")
    return [InputData(channel_name=c, data_source=str((root / c).resolve())) for c in found]


def train(*, image: str, data: str, hyperparameters: dict[str, str], role: str,
          local_root: Path | None = None, output: str | None = None, instance_type: str = "ml.m5.xlarge",
          job_name: str = "mlship-train", max_run_seconds: int = 3600, region: str | None = None,
          endpoint_url: str | None = None) -> dict[str, Any]:
    """Train and return where model.tar.gz is (a local path in local mode, an S3 URI otherwise).
    The SDK's session is `Aws.connect(region, endpoint_url)`'s (region None: the environment's)."""
    from sagemaker.core.shapes import OutputDataConfig, StoppingCondition
    from sagemaker.core.training.configs import Compute

    with warnings.catch_warnings():  # the SDK 3.27 imports its own deprecated sagemaker.train.configs
        warnings.simplefilter("ignore", DeprecationWarning)
        from sagemaker.train import ModelTrainer
        from sagemaker.train.model_trainer import Mode

    local = local_root is not None
    kw: dict[str, Any] = {}
    aws: Aws | None = None
    if local_root is not None:
        local_root.mkdir(parents=True, exist_ok=True)
        kw["local_container_root"] = str(local_root.resolve())
    elif output is None:
        raise DeployError("a SageMaker training job needs --output s3://bucket/prefix for model.tar.gz")
    else:
        kw["output_data_config"] = OutputDataConfig(s3_output_path=output)
    if not local or _local_needs_aws(image, data):
        # Local mode makes a session of its own only for S3 data or an ECR login, and with a session
        # it hands the container the session's credentials: give it ours in just those cases.
        aws = Aws.connect(region, endpoint_url)
        kw["sagemaker_session"] = aws.sdk_session()
    trainer = ModelTrainer(
        training_mode=Mode.LOCAL_CONTAINER if local else Mode.SAGEMAKER_TRAINING_JOB,
        training_image=image, role=role, base_job_name=job_name, hyperparameters=hyperparameters,
        compute=Compute(instance_type="local" if local else instance_type, instance_count=1),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=max_run_seconds),
        input_data_config=_channels(data), **kw)
    try:
        with aws.sdk_logs() if aws is not None else contextlib.nullcontext():
            trainer.train(wait=True, logs=True)
    except Exception as exc:  # the SDK raises its own and docker-compose's errors; name them
        raise DeployError(f"training with {image} failed: {exc}") from exc
    job = trainer._latest_training_job
    if local_root is not None:
        found = sorted(local_root.glob("**/compressed_artifacts/model.tar.gz"), key=os.path.getmtime)
        if not found:
            raise DeployError(f"local training left no model.tar.gz under {local_root}")
        return {"mode": "local", "model_tar": str(found[-1]), "job": getattr(job, "training_job_name", None)}
    return {"mode": "sagemaker", "job": job.training_job_name,
            "model_tar": job.model_artifacts.s3_model_artifacts}


def _local_needs_aws(image: str, data: str) -> bool:
    from sagemaker.core.common_utils import ECR_URI_PATTERN

    return data.startswith("s3://") or re.match(ECR_URI_PATTERN, image) is not None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True)
    parser.add_argument("--data", required=True, help="folder or s3:// prefix with train/ [validation/]")
    parser.add_argument("--role", default="arn:aws:iam::000000000000:role/local",
                        help="the job's execution role (any ARN in local mode)")
    parser.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--local-root", type=Path, help="run in the SDK's local-container mode here")
    parser.add_argument("--output", help="s3://bucket/prefix for a real job's model.tar.gz")
    parser.add_argument("--instance-type", default="ml.m5.xlarge")
    parser.add_argument("--job-name", default="mlship-train")
    parser.add_argument("--region", help="default: the environment's (AWS_REGION, AWS_DEFAULT_REGION, "
                        "~/.aws/config)")
    parser.add_argument("--endpoint-url", help="another AWS implementation (moto server in tests)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    hps = dict(h.split("=", 1) for h in args.hp if "=" in h)
    return train(image=args.image, data=args.data, hyperparameters=hps, role=args.role,
                 local_root=args.local_root, output=args.output, instance_type=args.instance_type,
                 job_name=args.job_name, region=args.region, endpoint_url=args.endpoint_url)
