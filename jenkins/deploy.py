"""Deploy the image that passed the gate, unchanged, to a SageMaker endpoint or to VMs behind nginx.

    python -m jenkins.deploy sagemaker --image-uri URI --model-tar model.tar.gz --bucket B \
        --endpoint NAME --role ARN [--instance-type ml.m5.large] [--instance-count 1] [--endpoint-url URL]
    python -m jenkins.deploy vms --image URI --hosts h1:8080,h2:8080 --nginx-conf out/mlapp.conf \
        [--run "ssh {host} 'podman pull {image} && systemctl --user restart mlship'"] [--database-url URL]

SageMaker: uploads model.tar.gz to S3, creates a model and an endpoint config named after the
deployment, then creates the endpoint or updates it in place (blue/green on SageMaker's side) and
waits for InService. `--endpoint-url` points boto3 at another implementation (the tests use moto's
server). VMs: writes the nginx upstream that balances over the hosts (health-checked through
/ping), then restarts one host at a time with the `--run` command and waits for its /ping before
touching the next, so the service never loses every backend; all hosts share the portal store
given by `--database-url` (PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
            raise TimeoutError(f"endpoint {endpoint} still {status['EndpointStatus']} after {wait_seconds}s")
        print(f"deploy: endpoint {endpoint} {status['EndpointStatus']} ...", flush=True)
        time.sleep(15)
    if status["EndpointStatus"] == "Failed":
        raise RuntimeError(f"endpoint {endpoint} failed: {status.get('FailureReason', 'no reason given')}")
    return {"target": "sagemaker", "endpoint": endpoint, "action": action, "model": name,
            "endpoint_config": status["EndpointConfigName"], "model_data": model_data, "image": image_uri,
            "status": status["EndpointStatus"]}


def nginx_conf(hosts: Sequence[str], listen: int = 80) -> str:
    """The load balancer in front of the VMs: /ping-failing or dead hosts are skipped."""
    servers = "\n".join(f"    server {h} max_fails=2 fail_timeout=10s;" for h in hosts)
    return f"""# Written by `python -m jenkins.deploy vms`: MLapp / SageMaker-style serve on several VMs.
upstream mlship {{
{servers}
    keepalive 32;
}}
server {{
    listen {listen};
    client_max_body_size 100m;
    location / {{
        proxy_pass http://mlship;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Request-Id $request_id;
        proxy_next_upstream error timeout http_502 http_503;
        proxy_read_timeout 120s;
    }}
}}
"""


def _ping(host: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}/ping", timeout=3) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def deploy_vms(*, image: str, hosts: Sequence[str], nginx_path: Path, run: str,
               database_url: str | None = None, ready_seconds: float = 120) -> dict[str, Any]:
    nginx_path.parent.mkdir(parents=True, exist_ok=True)
    nginx_path.write_text(nginx_conf(hosts))
    done = []
    for host in hosts:  # one at a time: the others keep serving behind nginx
        command = run.format(host=host.split(":")[0], hostport=host, image=shlex.quote(image),
                             database_url=shlex.quote(database_url or ""))
        print(f"deploy: {host}: {command}", flush=True)
        result = subprocess.run(command, shell=True, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{host}: restart command failed ({result.returncode}): "
                               f"{result.stderr[-500:]}")
        if not _ping(host, ready_seconds):
            raise RuntimeError(f"{host}: /ping not 200 within {ready_seconds:g}s after the restart; "
                               "stopping the rollout so the remaining hosts keep the old version")
        done.append(host)
    return {"target": "vms", "image": image, "hosts": done, "nginx_conf": str(nginx_path)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jenkins.deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="target", required=True)
    sm = sub.add_parser("sagemaker")
    sm.add_argument("--image-uri", required=True)
    sm.add_argument("--model-tar", type=Path, required=True)
    sm.add_argument("--bucket", required=True)
    sm.add_argument("--endpoint", required=True)
    sm.add_argument("--role", required=True)
    sm.add_argument("--instance-type", default="ml.m5.large")
    sm.add_argument("--instance-count", type=int, default=1)
    sm.add_argument("--region", default="us-east-1")
    sm.add_argument("--endpoint-url", help="another AWS implementation (moto server in tests)")
    vms = sub.add_parser("vms")
    vms.add_argument("--image", required=True)
    vms.add_argument("--hosts", required=True, help="comma-separated host:port list")
    vms.add_argument("--nginx-conf", type=Path, required=True)
    vms.add_argument("--run", default="ssh {host} 'podman pull {image} && systemctl --user restart mlship'",
                     help="restart command per host; {host}, {hostport}, {image}, {database_url}")
    vms.add_argument("--database-url", help="shared PostgreSQL of the portal")
    args = parser.parse_args(argv)
    try:
        if args.target == "sagemaker":
            if not args.model_tar.is_file():
                parser.error(f"--model-tar {args.model_tar} does not exist")
            out = deploy_sagemaker(image_uri=args.image_uri, model_tar=args.model_tar, bucket=args.bucket,
                                   endpoint=args.endpoint, role=args.role, instance_type=args.instance_type,
                                   instance_count=args.instance_count, endpoint_url=args.endpoint_url,
                                   region=args.region)
        else:
            hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
            out = deploy_vms(image=args.image, hosts=hosts, nginx_path=args.nginx_conf, run=args.run,
                             database_url=args.database_url)
    except (RuntimeError, TimeoutError) as exc:
        print(f"deploy: FAILED {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
