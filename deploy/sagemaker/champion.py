"""python -m deploy sagemaker-champion: the model an endpoint serves now, unpacked for the gate.

Follows endpoint -> endpoint config -> model (the variant with the largest weight) -> ModelDataUrl,
downloads that model.tar.gz and extracts it safely into --out, so `jenkins.gate --champion OUT`
compares against OUT/model.json. No endpoint yet is not an error: there is no champion."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.sagemaker.aws import Aws
from deploy.tarball import MANIFEST, extract


def champion(aws: Aws, endpoint: str, out: Path) -> dict[str, Any]:
    try:
        desc = aws.sm.describe_endpoint(EndpointName=endpoint)
    except aws.sm.exceptions.ClientError as exc:
        if "Could not find endpoint" in str(exc):
            return {"endpoint": endpoint, "champion": None, "reason": "the endpoint does not exist yet"}
        raise
    config = aws.sm.describe_endpoint_config(EndpointConfigName=desc["EndpointConfigName"])
    variant = max(config["ProductionVariants"], key=lambda v: float(v.get("InitialVariantWeight", 1.0)))
    model = aws.sm.describe_model(ModelName=variant["ModelName"])
    url = (model.get("PrimaryContainer") or model["Containers"][0]).get("ModelDataUrl")
    if not url or not url.startswith("s3://"):
        raise DeployError(f"model {variant['ModelName']} of {endpoint} has no s3:// ModelDataUrl ({url!r})")
    bucket, _, key = url[len("s3://"):].partition("/")
    with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
        tar = Path(tmp) / "model.tar.gz"
        aws.s3.download_file(bucket, key, str(tar))
        extract(tar, out)
    if not (out / MANIFEST).is_file():
        raise DeployError(f"{url} holds no {MANIFEST}: not a model made by `train`")
    return {"endpoint": endpoint, "champion": str(out), "model": variant["ModelName"], "model_data": url,
            "endpoint_config": desc["EndpointConfigName"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder to unpack the champion model into")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--endpoint-url", help="another AWS implementation (moto server in tests)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    return champion(Aws.connect(args.region, args.endpoint_url), args.endpoint, args.out)
