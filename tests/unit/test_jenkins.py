"""The SageMaker deploy target against moto's server (the Jenkinsfile's plan is tested in
test_jenkinsfile.py, the gate in test_gate.py, the VM target in test_deploy_vms.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import sagemaker
from deploy.__main__ import main as deploy_main

ROOT = Path(__file__).resolve().parents[2]


# --- SageMaker, against moto's server -------------------------------------------------------
def test_sagemaker_deploy_creates_then_updates_the_endpoint(moto_server: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="models")
    tar = tmp_path / "model.tar.gz"
    tar.write_bytes(b"not really a tarball, S3 does not care")
    common = ["sagemaker", "--image-uri", "123.dkr.ecr.us-east-1.amazonaws.com/mlship:abc", "--model-tar",
              str(tar), "--bucket", "models", "--endpoint", "gender", "--role",
              "arn:aws:iam::123456789012:role/sm", "--endpoint-url", moto_server]
    first = sagemaker.deploy_sagemaker(image_uri=common[2], model_tar=tar, bucket="models", endpoint="gender",
                                    role=common[10], endpoint_url=moto_server)
    assert first["action"] == "created" and first["status"] == "InService"
    import time

    time.sleep(1.1)  # a new deployment name (they carry the second)
    # The second deployment must update the live endpoint in place (no downtime). moto 5.2 does not
    # implement UpdateEndpoint, so this test can only show the call is made, with the new config.
    calls: list[dict[str, str]] = []
    real_client = boto3.client

    def recording_client(service: str, **kw: object) -> object:
        client = real_client(service, **kw)  # type: ignore[call-overload]
        if service == "sagemaker":
            client.meta.events.register("provide-client-params.sagemaker.UpdateEndpoint",
                                        lambda params, **_: calls.append(params))
        return client

    monkeypatch.setattr(boto3, "client", recording_client)
    with pytest.raises(Exception, match="UpdateEndpoint|InternalFailure|500"):
        deploy_main(common)
    monkeypatch.setattr(boto3, "client", real_client)
    assert len(calls) == 1 and calls[0]["EndpointName"] == "gender"
    sm = boto3.client("sagemaker", endpoint_url=moto_server)
    new_config = sm.describe_endpoint_config(EndpointConfigName=calls[0]["EndpointConfigName"])
    assert new_config["EndpointConfigName"] != first["endpoint_config"]
    model = sm.describe_model(ModelName=new_config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Image"] == common[2]
    s3 = boto3.client("s3", endpoint_url=moto_server)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]]
    assert len(keys) == 2 and all(k.endswith("/model.tar.gz") for k in keys)
