"""Deploy to a SageMaker endpoint: upload model.tar.gz, create model and endpoint config, create or
update the endpoint, wait for InService. `--endpoint-url` points boto3 at another implementation (the
tests use moto's server)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from deploy.errors import DeployError


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def deploy_sagemaker(*, image_uri: str, model_tar: Path, bucket: str, endpoint: str, role: str,
                     instance_type: str = "ml.m5.large", instance_count: int = 1,
                     endpoint_url: str | None = None, region: str = "us-east-1",
                     environment: dict[str, str] | None = None, wait_seconds: float = 1800) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)
    sm = boto3.client("sagemaker", region_name=region, endpoint_url=endpoint_url)
    name = f"{endpoint}-{_stamp()}"
    key = f"{endpoint}/{name}/model.tar.gz"
    s3.upload_file(str(model_tar), bucket, key)
    model_data = f"s3://{bucket}/{key}"
    sm.create_model(ModelName=name, ExecutionRoleArn=role, PrimaryContainer={
        "Image": image_uri, "ModelDataUrl": model_data, "Environment": environment or {}})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": instance_count,
        "InstanceType": instance_type, "InitialVariantWeight": 1.0}])
    try:
        sm.describe_endpoint(EndpointName=endpoint)
        action = "updated"
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=name)
    except sm.exceptions.ClientError as exc:
        if "Could not find" not in str(exc) and "ValidationException" not in str(exc):
            raise
        action = "created"
        sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=name)
    deadline = time.monotonic() + wait_seconds
    while True:
        status = sm.describe_endpoint(EndpointName=endpoint)
        if status["EndpointStatus"] in ("InService", "Failed"):
            break
        if time.monotonic() > deadline:
            raise DeployError(f"endpoint {endpoint} still {status['EndpointStatus']} after {wait_seconds}s")
        print(f"deploy: endpoint {endpoint} {status['EndpointStatus']} ...", flush=True)
        time.sleep(15)
    if status["EndpointStatus"] == "Failed":
        raise DeployError(f"endpoint {endpoint} failed: {status.get('FailureReason', 'no reason given')}")
    return {"target": "sagemaker", "endpoint": endpoint, "action": action, "model": name,
            "endpoint_config": status["EndpointConfigName"], "model_data": model_data, "image": image_uri,
            "status": status["EndpointStatus"]}



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-uri", required=True)
    parser.add_argument("--model-tar", type=Path, required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--role", required=True)
    parser.add_argument("--instance-type", default="ml.m5.large")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--endpoint-url", help="another AWS implementation (moto server in tests)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    if not args.model_tar.is_file():
        raise DeployError(f"--model-tar {args.model_tar} does not exist")
    return deploy_sagemaker(image_uri=args.image_uri, model_tar=args.model_tar, bucket=args.bucket,
                            endpoint=args.endpoint, role=args.role, instance_type=args.instance_type,
                            instance_count=args.instance_count, endpoint_url=args.endpoint_url,
                            region=args.region)
