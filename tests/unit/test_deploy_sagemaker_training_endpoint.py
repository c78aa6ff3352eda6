"""`deploy sagemaker-train --endpoint-url URL --region R` alone (no AWS_ENDPOINT_URL in the environment,
which the moto fixture sets) takes every client of the training job to that URL and region: the
SDK's session is built from `Aws.connect`, and so are the clients the SDK makes from it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deploy.__main__ import main as deploy_main
from deploy.sagemaker.aws import Aws
from tests.unit.test_deploy_sagemaker import IMAGE, ROLE, aws_env  # noqa: F401  (fixture)

URL = "http://127.0.0.1:4566"  # never contacted: the unit check only builds clients
REGION = "eu-west-1"  # not the moto fixture's AWS_DEFAULT_REGION (us-east-1)


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every botocore client made in the test, by the deploy, the SDK or boto3's default session."""
    from botocore.session import Session

    clients: list[Any] = []
    create = Session.create_client

    def record(self: Session, *args: Any, **kwargs: Any) -> Any:
        client = create(self, *args, **kwargs)
        clients.append(client)
        return client

    monkeypatch.setattr(Session, "create_client", record)
    return clients


def _where(clients: list[Any]) -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for client in clients:
        found.setdefault(client.meta.service_model.service_name, set()).add(
            (client.meta.endpoint_url, client.meta.region_name))
    return found


def test_the_sdk_session_makes_every_client_for_the_endpoint_url_and_region(
        monkeypatch: pytest.MonkeyPatch, made: list[Any]) -> None:
    pytest.importorskip("sagemaker.core.helper.session_helper", reason="the sagemaker SDK is not installed")
    from sagemaker.core.common_utils import sts_regional_endpoint

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(key, value)
    sdk = Aws.connect(REGION, URL).sdk_session()
    # what ModelTrainer and its TrainingJob ask the session for; STS with AWS's own URL named by the SDK
    sdk.boto_session.client("sts", region_name=REGION, endpoint_url=sts_regional_endpoint(REGION))
    sdk.boto_session.client("logs")
    sdk.boto_session.client("iam")

    where = _where(made)
    assert set(where) >= {"sagemaker", "sagemaker-runtime", "s3", "sagemaker-featurestore-runtime",
                          "sagemaker-metrics", "sts", "logs", "iam"}
    for service, places in where.items():
        assert places == {(URL, REGION)}, service
    assert sdk.sagemaker_client.meta.endpoint_url == URL and sdk.boto_region_name == REGION


def test_endpoint_url_alone_takes_the_training_job_to_moto(
        aws_env: str, monkeypatch: pytest.MonkeyPatch, made: list[Any],  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    import boto3

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    made.clear()
    argv = ["sagemaker-train", "--image", IMAGE, "--data", "s3://models/data", "--role", ROLE,
            "--output", "s3://models/out", "--job-name", "endpoint-job", "--hp", "num_round=5",
            "--endpoint-url", aws_env, "--region", REGION]
    assert deploy_main(argv) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["mode"] == "sagemaker" and out["job"].startswith("endpoint-job")

    where = _where(made)
    assert set(where) >= {"sagemaker", "logs"}  # the job's, and the SDK's for its logs while it waits
    for service, places in where.items():
        assert places == {(aws_env, REGION)}, service
    # read back from moto's server itself, in that region
    sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=aws_env)
    job = sm.describe_training_job(TrainingJobName=out["job"])
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE and job["RoleArn"] == ROLE
    assert job["HyperParameters"] == {"num_round": "5"}
    assert f":{REGION}:" in job["TrainingJobArn"]


def test_local_mode_on_local_data_makes_no_aws_client(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, made: list[Any]) -> None:
    """A local run with local data and a local image never needs AWS (nor a region): no session is
    made, so none hands the container credentials."""
    pytest.importorskip("sagemaker.train", reason="the sagemaker SDK is not installed")
    from deploy.sagemaker import training as sagemaker_training

    for key in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    seen: dict[str, Any] = {}

    class Trainer:  # stands in for ModelTrainer: what it is given is what matters here
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)
            raise RuntimeError("stop here")

    import sagemaker.train

    monkeypatch.setattr(sagemaker.train, "ModelTrainer", Trainer)
    (tmp_path / "data" / "train").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="stop here"):
        sagemaker_training.train(image="mlship:dev", data=str(tmp_path / "data"), hyperparameters={},
                                 role=ROLE, local_root=tmp_path / "root", endpoint_url=URL)
    assert "sagemaker_session" not in seen and made == []
    seen.clear()
    with pytest.raises(RuntimeError, match="stop here"):  # S3 data: the SDK needs a session, ours
        sagemaker_training.train(image="mlship:dev", data="s3://models/data", hyperparameters={},
                                 role=ROLE, local_root=tmp_path / "root", region=REGION, endpoint_url=URL)
    assert seen["sagemaker_session"].boto_session.region_name == REGION
    for service, places in _where(made).items():
        assert places == {(URL, REGION)}, service
