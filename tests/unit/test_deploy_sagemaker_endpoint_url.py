"""`--endpoint-url` alone (no AWS_ENDPOINT_URL in the environment, which the moto fixture sets)
takes every client of the deploy to that URL: the deploy's own boto3 clients and those the
sagemaker SDK's resources make from the deploy's session."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deploy.__main__ import main as deploy_main
from deploy.sagemaker.aws import Aws
from deploy.tarball import example_requests, warmup_examples
from tests.unit.test_deploy_sagemaker import IMAGE, ROLE, aws_env, model_tar  # noqa: F401  (fixtures)

URL = "http://127.0.0.1:4566"  # never contacted: the unit check only builds clients


def _clients(aws: Aws) -> dict[str, Any]:
    """Every botocore client the Aws holds, whatever it is called (a client added later is checked too)."""
    found = {f.name: getattr(aws, f.name) for f in dataclasses.fields(aws)}
    return {name: value for name, value in found.items() if hasattr(value, "meta")}


def test_every_client_is_built_for_the_endpoint_url_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(key, value)
    aws = Aws.connect("eu-west-1", URL)

    clients = _clients(aws)
    assert set(clients) >= {"sm", "runtime", "s3", "cloudwatch", "autoscaling"}
    for name, client in clients.items():
        assert (client.meta.endpoint_url, client.meta.region_name) == (URL, "eu-west-1"), name
    # the SDK's resources ask the session for their clients (and for IAM when they check the role)
    utils = pytest.importorskip("sagemaker.core.utils.utils", reason="the sagemaker SDK is not installed")
    sdk = utils.SageMakerClient(session=aws.session, region_name=aws.region)
    for client in (sdk.sagemaker_client, sdk.sagemaker_runtime_client, aws.session.client("iam")):
        assert (client.meta.endpoint_url, client.meta.region_name) == (URL, "eu-west-1")


def _queue_predictions(moto_url: str, tar: Path) -> None:
    """moto's InvokeEndpoint answers from a queue: one answer with a prediction per example, per request."""
    results = [{"Body": json.dumps({"predictions": [{"label": "M", "probability": 0.6}] * len(batch)}),
                "ContentType": "application/json"} for batch in example_requests(warmup_examples(tar))]
    request = urllib.request.Request(f"{moto_url}/moto-api/static/sagemaker/endpoint-results", method="POST",
                                     data=json.dumps({"results": results}).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).close()


def test_endpoint_url_alone_reaches_moto_for_every_client(
        aws_env: str, model_tar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    import boto3

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    _queue_predictions(aws_env, model_tar)
    argv = ["sagemaker", "--image-uri", IMAGE, "--model-tar", str(model_tar), "--bucket", "models",
            "--endpoint", "gender", "--role", ROLE, "--endpoint-url", aws_env, "--autoscale", "1:2",
            "--poll-seconds", "0"]
    assert deploy_main(argv) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    assert out["action"] == "created" and out["smoke_test"] == "passed"

    def moto(service: str) -> Any:  # what the deploy did, read back from moto's server itself
        return boto3.client(service, region_name="us-east-1", endpoint_url=aws_env)

    assert moto("sagemaker").describe_endpoint(EndpointName="gender")["EndpointConfigName"] == out["model"]
    assert moto("s3").head_object(Bucket="models", Key=f"gender/{out['model']}/model.tar.gz")["ContentLength"]
    alarms = moto("cloudwatch").describe_alarms(AlarmNames=out["alarms"])["MetricAlarms"]
    assert len(alarms) == 2
    targets = moto("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    assert [t["ResourceId"] for t in targets["ScalableTargets"]] == ["endpoint/gender/variant/AllTraffic"]

    champion = tmp_path / "champion"
    assert deploy_main(["sagemaker-champion", "--endpoint", "gender", "--out", str(champion),
                        "--endpoint-url", aws_env]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["model"] == out["model"]
    assert (champion / "model.json").is_file()
