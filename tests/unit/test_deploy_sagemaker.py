"""The SageMaker deploy. moto's server stands in for what moto implements (S3, models, endpoint
configs, create/describe endpoint, CloudWatch alarms, application autoscaling, data capture);
botocore's Stubber, which validates every request and response against SageMaker's API model, for
what moto does not (UpdateEndpoint and its DeploymentConfig, endpoint statuses other than
InService) and for sagemaker-runtime, whose moto answers are canned bodies (the container tier
invokes the real image through the SDK's local mode)."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deploy.__main__ import main as deploy_main
from deploy.errors import DeployError
from deploy.sagemaker import endpoint
from deploy.sagemaker.aws import Aws
from deploy.sagemaker.requests import Guardrails, Options
from deploy.tarball import extract, warmup_examples

pytestmark = pytest.mark.e2e
ROLE = "arn:aws:iam::123456789012:role/sm"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlship:abc"
OLD, NEW = "gender-20261130-120000", "gender-20261201-090000"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/gender"


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")  # moto has no IAM role to check
    utils = pytest.importorskip("sagemaker.core.utils.utils", reason="the sagemaker SDK is not installed: "
                                "pip install --no-deps -r requirements/sagemaker-sdk.lock")
    utils.SageMakerClient.reset()  # the SDK caches clients per session; each test has its own server
    import urllib.request

    import boto3

    # moto's backends live in the process, not in the server: start each test from nothing
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).close()
    boto3.client("s3").create_bucket(Bucket="models")
    return moto_server


@pytest.fixture
def model_tar(gender_model: Any, tmp_path: Path) -> Path:
    """model.tar.gz as jenkins.train packs it: the model directory's entries at the top."""
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for entry in sorted(gender_model.model_dir.iterdir()):
            tar.add(entry, arcname=entry.name)
    return path


def _moto_capture_summary(parsed: dict[str, Any], **_: Any) -> None:
    """moto 5.2.5 answers DescribeEndpoint with the config's DataCaptureConfig; SageMaker's API model
    (and the SDK's shapes) have a DataCaptureConfigSummary there, with two required fields moto's
    answer lacks (botocore keeps only EnableCapture and DestinationS3Uri of it). Fill them in."""
    capture = parsed.get("DataCaptureConfig")
    if capture and "CaptureStatus" not in capture:
        parsed["DataCaptureConfig"] = {
            "EnableCapture": capture.get("EnableCapture", True), "CaptureStatus": "Started",
            "CurrentSamplingPercentage": capture.get("CurrentSamplingPercentage", 100),
            "DestinationS3Uri": capture["DestinationS3Uri"]}


def _aws(moto_url: str, **replace: Any) -> Aws:
    aws = Aws.connect("us-east-1", moto_url)
    aws.session.events.register("after-call.sagemaker.DescribeEndpoint", _moto_capture_summary)
    for key, value in replace.items():
        setattr(aws, key, value)
    return aws


def _stubbed(service: str) -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.activate()
    return client, stub


def _described(status: str, config: str, reason: str | None = None) -> dict[str, Any]:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    out: dict[str, Any] = {"EndpointName": "gender", "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/gender",
                           "EndpointConfigName": config, "EndpointStatus": status, "CreationTime": now,
                           "LastModifiedTime": now}
    if reason:
        out["FailureReason"] = reason
    return out


def _answer(n: int) -> dict[str, Any]:
    from botocore.response import StreamingBody

    body = json.dumps({"predictions": [{"label": "M", "probability": 0.6}] * n}).encode()
    return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}


def _release(tar: Path, **kw: Any) -> endpoint.Release:
    return endpoint.Release(IMAGE, tar, "models", "gender", ROLE, poll_seconds=0, wait_seconds=60, **kw)


# --- against moto's server --------------------------------------------------------------------
def test_first_deploy_creates_model_config_endpoint_alarms_capture_and_autoscaling(
        aws_env: str, model_tar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setattr(endpoint, "_stamp", lambda: "20261201-090000")
    runtime, stub = _stubbed("sagemaker-runtime")
    examples = warmup_examples(model_tar)
    stub.add_response("invoke_endpoint", _answer(len(examples)), {
        "EndpointName": "gender", "ContentType": "application/json", "Accept": "application/json",
        "Body": json.dumps({"instances": examples})})
    sm = boto3.client("sagemaker")
    for stamp in ("20261101-000000", "20261102-000000", "20261103-000000"):  # three older releases
        sm.create_model(ModelName=f"gender-{stamp}", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
        sm.create_endpoint_config(EndpointConfigName=f"gender-{stamp}", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": f"gender-{stamp}", "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1}])
    rel = _release(model_tar, options=Options(capture_s3_uri="s3://models/capture", capture_percent=20),
                   scaling=endpoint.alarms.Scaling(1, 3, 500.0), keep=3)

    out = endpoint.deploy(_aws(aws_env, runtime=runtime), rel)

    stub.assert_no_pending_responses()
    assert out["action"] == "created" and out["endpoint_config"] == NEW and out["smoke_test"] == "passed"
    assert sm.describe_endpoint(EndpointName="gender")["EndpointConfigName"] == NEW
    config = sm.describe_endpoint_config(EndpointConfigName=NEW)
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://models/capture"
    assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 20
    model = sm.describe_model(ModelName=NEW)["PrimaryContainer"]
    assert model["Image"] == IMAGE and model["Environment"] == {"MLSHIP_RELEASE": NEW}
    assert model["ModelDataUrl"] == f"s3://models/gender/{NEW}/model.tar.gz"
    assert boto3.client("s3").head_object(Bucket="models", Key=f"gender/{NEW}/model.tar.gz")["ContentLength"] > 0
    alarms = {a["AlarmName"]: a for a in boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]}
    assert set(out["alarms"]) == {f"{NEW}-invocation-5xx", f"{NEW}-model-latency"} <= set(alarms)
    targets = boto3.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets["ScalableTargets"]] == [
        ("endpoint/gender/variant/AllTraffic", 1, 3)]
    policies = boto3.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    spec = policies["ScalingPolicies"][0]["TargetTrackingScalingPolicyConfiguration"]
    assert spec["TargetValue"] == 500.0
    # keep=3 with the new release: the oldest of the four is gone, with its model
    assert out["removed_releases"] == ["gender-20261101-000000"]
    left = sorted(c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"])
    assert left == ["gender-20261102-000000", "gender-20261103-000000", NEW]
    assert "gender-20261101-000000" not in [m["ModelName"] for m in sm.list_models()["Models"]]


def test_serverless_and_async_configs_reach_the_endpoint_config(aws_env: str, model_tar: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setattr(endpoint, "_stamp", lambda: "20261201-090000")
    opts = Options(serverless_memory_mb=2048, serverless_max_concurrency=3, async_output_s3_uri="s3://models/async")
    out = endpoint.deploy(_aws(aws_env), _release(model_tar, options=opts))
    assert out["smoke_test"].startswith("skipped: asynchronous")
    config = boto3.client("sagemaker").describe_endpoint_config(EndpointConfigName=NEW)
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 3}
    assert config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == "s3://models/async"


def test_champion_is_the_served_model_unpacked_for_the_gate(aws_env: str, model_tar: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from jenkins import gate

    out_dir = tmp_path / "champion"
    assert deploy_main(["sagemaker-champion", "--endpoint", "gender", "--out", str(out_dir),
                        "--endpoint-url", aws_env]) == 0
    assert json.loads(capsys.readouterr().out)["champion"] is None  # no endpoint yet: no champion
    endpoint.deploy(_aws(aws_env, runtime=_smoke_ok(model_tar)), _release(model_tar))
    assert deploy_main(["sagemaker-champion", "--endpoint", "gender", "--out", str(out_dir),
                        "--endpoint-url", aws_env]) == 0
    assert json.loads(capsys.readouterr().out)["model_data"].endswith("/model.tar.gz")
    assert json.loads((out_dir / "model.json").read_text())["metrics"]
    assert gate.main(["--model-dir", str(out_dir), "--champion", str(out_dir), "--min", "roc_auc=0.1"]) == 0


def _smoke_ok(tar: Path) -> Any:
    runtime, stub = _stubbed("sagemaker-runtime")
    stub.add_response("invoke_endpoint", _answer(len(warmup_examples(tar))))
    return runtime


# --- the guarded update and each failure, through the Stubber -----------------------------------
def _update_stubs(stub: Any, model_tar: Path, opts: Options) -> dict[str, Any]:
    stub.add_response("describe_endpoint", _described("InService", OLD))
    expected = {"EndpointName": "gender", "EndpointConfigName": NEW, "DeploymentConfig": {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 600,
                                            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20}},
            "TerminationWaitInSeconds": 120, "MaximumExecutionTimeoutInSeconds": 3600},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": f"{NEW}-invocation-5xx"},
                                                 {"AlarmName": f"{NEW}-model-latency"}]}}}
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/gender"},
                      expected)
    return expected


CANARY = Options(guardrails=Guardrails("CANARY", step_percent=20, wait_seconds=600))


@pytest.fixture
def stamped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint, "_stamp", lambda: "20261201-090000")


def _scale(aws_env: str, low: int, high: int) -> None:
    import boto3

    boto3.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId="endpoint/gender/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=low, MaxCapacity=high)


def _targets() -> list[tuple[str, int, int]]:
    import boto3

    found = boto3.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    return [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in found["ScalableTargets"]]


def test_guarded_update_sends_the_canary_deployment_config_and_ends_on_the_new_config(
        aws_env: str, model_tar: Path, stamped: None) -> None:
    import boto3

    _scale(aws_env, 1, 2)  # an autoscaled endpoint: deregistered for the update, registered again after
    seen: list[list[tuple[str, int, int]]] = []
    sm, stub = _stubbed("sagemaker")
    sm.meta.events.register("provide-client-params.sagemaker.UpdateEndpoint", lambda **_: seen.append(_targets()))
    _update_stubs(stub, model_tar, CANARY)
    stub.add_response("describe_endpoint", _described("Updating", OLD))
    stub.add_response("describe_endpoint", _described("InService", NEW))
    stub.add_response("list_endpoint_configs", {"EndpointConfigs": []}, {"NameContains": "gender"})
    rel = _release(model_tar, options=CANARY, scaling=endpoint.alarms.Scaling(2, 5, 800.0))
    out = endpoint.deploy(_aws(aws_env, sm=sm, runtime=_smoke_ok(model_tar)), rel)
    stub.assert_no_pending_responses()
    assert out["action"] == "updated" and out["previous_config"] == OLD and out["endpoint_config"] == NEW
    assert seen == [[]]  # no scalable target while UpdateEndpoint was sent
    assert _targets() == [("endpoint/gender/variant/AllTraffic", 2, 5)]
    alarms = boto3.client("cloudwatch").describe_alarms(AlarmNames=out["alarms"])["MetricAlarms"]
    assert len(alarms) == 2


def test_an_autoscaled_endpoint_is_not_updated_without_autoscale(aws_env: str, model_tar: Path) -> None:
    _scale(aws_env, 1, 2)
    sm, stub = _stubbed("sagemaker")
    stub.add_response("describe_endpoint", _described("InService", OLD))
    with pytest.raises(DeployError, match=f"autoscales variants AllTraffic.*--autoscale MIN:MAX.*nothing was changed, {OLD} serves"):
        endpoint.deploy(_aws(aws_env, sm=sm), _release(model_tar))
    assert _targets() == [("endpoint/gender/variant/AllTraffic", 1, 2)]


@pytest.mark.parametrize("traffic,key", [("LINEAR", "LinearStepSize"), ("ALL_AT_ONCE", None)])
def test_linear_and_all_at_once_are_valid_update_requests(traffic: str, key: str | None) -> None:
    from botocore.stub import ANY

    from deploy.sagemaker.requests import deployment_config

    config = deployment_config(Guardrails(traffic, step_percent=25, wait_seconds=60), ["a"])
    routing = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == traffic and (key is None or routing[key]["Value"] == 25)
    assert set(routing) - {"Type", "WaitIntervalInSeconds"} == ({key} if key else set())
    sm, stub = _stubbed("sagemaker")  # the Stubber refuses parameters the API model does not accept
    stub.add_response("update_endpoint", {"EndpointArn": ARN}, {"EndpointName": "e", "EndpointConfigName": "c",
                                                                    "DeploymentConfig": ANY})
    sm.update_endpoint(EndpointName="e", EndpointConfigName="c", DeploymentConfig=config)


@pytest.mark.parametrize("status,config,reason,message", [
    ("InService", OLD, "Model container failed to pass ping", "update of gender to .* failed .*ping.*; "
     f"{OLD} still serves"),
    ("UpdateRollbackFailed", OLD, "rollback timed out", "the rollback from .* failed .*manual repair"),
    ("RollingBack", NEW, "alarm tripped", f"rolled back from .*alarm tripped.*; {OLD} serves"),
    ("Failed", NEW, "out of capacity", "is Failed .*out of capacity.*nothing serves"),
])
def test_failed_updates_exit_non_zero_at_once_naming_the_cause(
        aws_env: str, model_tar: Path, stamped: None, status: str, config: str, reason: str, message: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sm, stub = _stubbed("sagemaker")
    _update_stubs(stub, model_tar, CANARY)
    stub.add_response("describe_endpoint", _described("Updating", OLD))
    stub.add_response("describe_endpoint", _described(status, config, reason))
    if status == "RollingBack":  # reported once the rollback has finished
        stub.add_response("describe_endpoint", _described("InService", OLD))
    aws = _aws(aws_env, sm=sm)
    monkeypatch.setattr(Aws, "connect", classmethod(lambda cls, *a, **k: aws))
    argv = ["sagemaker", "--image-uri", IMAGE, "--model-tar", str(model_tar), "--bucket", "models",
            "--endpoint", "gender", "--role", ROLE, "--step-percent", "20", "--bake-seconds", "600",
            "--poll-seconds", "0.5"]
    import time

    started = time.monotonic()
    assert deploy_main(argv) == 1
    assert time.monotonic() - started < 10  # at once, not after the hour's timeout
    stub.assert_no_pending_responses()  # no polling after the final status
    err = capsys.readouterr().err
    assert err.startswith("deploy: FAILED ")
    import re

    assert re.search(message, err), err


@pytest.mark.parametrize("status", ["Updating", "Creating", "SystemUpdating", "RollingBack"])
def test_a_busy_endpoint_is_refused_before_anything_is_created(aws_env: str, model_tar: Path, status: str) -> None:
    import boto3

    sm, stub = _stubbed("sagemaker")
    stub.add_response("describe_endpoint", _described(status, OLD))  # and nothing else: no CreateEndpoint
    with pytest.raises(DeployError, match=f"endpoint gender is {status} .*another change is under way; nothing was changed"):
        endpoint.deploy(_aws(aws_env, sm=sm), _release(model_tar))
    stub.assert_no_pending_responses()
    assert boto3.client("sagemaker").list_models()["Models"] == []


def test_a_failed_smoke_test_rolls_back_to_the_previous_config(aws_env: str, model_tar: Path,
                                                               stamped: None) -> None:
    sm, stub = _stubbed("sagemaker")
    _update_stubs(stub, model_tar, CANARY)
    stub.add_response("describe_endpoint", _described("InService", NEW))
    stub.add_response("update_endpoint", {"EndpointArn": ARN}, {"EndpointName": "gender", "EndpointConfigName": OLD})
    stub.add_response("describe_endpoint", _described("Updating", NEW))
    stub.add_response("describe_endpoint", _described("InService", OLD))
    runtime, rstub = _stubbed("sagemaker-runtime")
    rstub.add_response("invoke_endpoint", _answer(1))  # one prediction for several examples
    assert len(warmup_examples(model_tar)) > 1
    with pytest.raises(DeployError, match=f"{NEW} on gender failed its smoke test .* predictions back.*rolled back, {OLD} serves"):
        endpoint.deploy(_aws(aws_env, sm=sm, runtime=runtime), _release(model_tar, options=CANARY))
    stub.assert_no_pending_responses()


def test_a_smoke_test_error_from_the_endpoint_also_rolls_back(aws_env: str, model_tar: Path, stamped: None) -> None:
    sm, stub = _stubbed("sagemaker")
    _update_stubs(stub, model_tar, CANARY)
    stub.add_response("describe_endpoint", _described("InService", NEW))
    stub.add_response("update_endpoint", {"EndpointArn": ARN}, {"EndpointName": "gender", "EndpointConfigName": OLD})
    stub.add_response("describe_endpoint", _described("InService", OLD))
    runtime, rstub = _stubbed("sagemaker-runtime")
    rstub.add_client_error("invoke_endpoint", "ModelError", "Received server error (500) from primary", 424)
    with pytest.raises(DeployError, match=f"InvokeEndpoint failed.*ModelError.*rolled back, {OLD} serves"):
        endpoint.deploy(_aws(aws_env, sm=sm, runtime=runtime), _release(model_tar, options=CANARY))


def test_moto_refuses_update_endpoint_and_the_deploy_says_what_serves(aws_env: str, model_tar: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Moved from test_jenkins: create, then a second release updates the live endpoint in place. moto
    does not implement UpdateEndpoint (HTTP 500), which must be a named failure, not a traceback."""
    import time

    import boto3

    first = endpoint.deploy(_aws(aws_env, runtime=_smoke_ok(model_tar)), _release(model_tar))
    assert first["action"] == "created" and first["status"] == "InService"
    time.sleep(1.1)  # a new release name (they carry the second)
    argv = ["sagemaker", "--image-uri", IMAGE, "--model-tar", str(model_tar), "--bucket", "models",
            "--endpoint", "gender", "--role", ROLE, "--endpoint-url", aws_env]
    assert deploy_main(argv) == 1
    err = capsys.readouterr().err
    assert "UpdateEndpoint gender -> gender-" in err and f"{first['endpoint_config']} serves" in err
    sm = boto3.client("sagemaker")
    assert sm.describe_endpoint(EndpointName="gender")["EndpointConfigName"] == first["endpoint_config"]
    configs = [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    assert len(configs) == 2
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="models")["Contents"]]
    assert len(keys) == 2 and all(k.endswith("/model.tar.gz") for k in keys)


def test_ab_split_keeps_the_serving_model_as_champion(aws_env: str, model_tar: Path) -> None:
    from deploy.sagemaker.requests import production_variants

    variants = production_variants(NEW, Options(ab_weight=0.2), current_model=OLD)
    assert [(v["VariantName"], v["ModelName"], v["InitialVariantWeight"]) for v in variants] == [
        ("Champion", OLD, 0.8), ("Challenger", NEW, 0.2)]
    with pytest.raises(ValueError, match="needs a model serving now"):
        production_variants(NEW, Options(ab_weight=0.2), current_model=None)


# --- model.tar.gz safety ---------------------------------------------------------------------------
def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 0
    return info


@pytest.mark.parametrize("member,why", [
    (_info("../outside.json"), "points outside"),
    (_info("/etc/passwd"), "points outside"),
    (_info("sub/../../x"), "points outside"),
    (_info("link", tarfile.SYMTYPE, "../../etc/passwd"), "leaves the model directory"),
    (_info("link", tarfile.SYMTYPE, "/etc/passwd"), "leaves the model directory"),
    (_info("hard", tarfile.LNKTYPE, "../x"), "leaves the model directory"),
    (_info("dev", tarfile.CHRTYPE), "device or FIFO"),
    (_info("fifo", tarfile.FIFOTYPE), "device or FIFO"),
])
def test_extraction_refuses_members_that_escape(tmp_path: Path, member: tarfile.TarInfo, why: str) -> None:
    target = tmp_path / "out"
    with pytest.raises(DeployError, match=why):
        extract(_tar_with(tmp_path, member), target)
    assert not target.exists()


def test_extraction_keeps_links_inside(tmp_path: Path) -> None:
    path = tmp_path / "ok.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = b"{}"
        info = _info("sub/model.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.addfile(_info("sub/alias.json", tarfile.SYMTYPE, "model.json"))
    extract(path, tmp_path / "out")
    assert (tmp_path / "out/sub/alias.json").read_text() == "{}"


def test_a_new_endpoint_that_fails_its_smoke_test_is_reported_with_nothing_to_roll_back_to(
        aws_env: str, model_tar: Path, stamped: None) -> None:
    runtime, rstub = _stubbed("sagemaker-runtime")
    rstub.add_response("invoke_endpoint", _answer(0))
    with pytest.raises(DeployError, match=f"{NEW} on gender failed its smoke test .*0 predictions back.*no earlier config"):
        endpoint.deploy(_aws(aws_env, runtime=runtime), _release(model_tar))


def test_model_trainer_submits_the_image_as_a_training_job(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The Train stage as a real job, through ModelTrainer, against moto (which completes jobs at once
    and runs nothing: the container tier runs the image under the SDK's local mode)."""
    import boto3

    argv = ["sagemaker-train", "--image", IMAGE, "--data", "s3://models/data", "--role", ROLE,
            "--output", "s3://models/out", "--job-name", "wt11-job", "--hp", "num_round=5", "--hp", "algorithm=xgboost"]
    assert deploy_main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["mode"] == "sagemaker" and out["model_tar"] == f"s3://models/out/{out['job']}/output/model.tar.gz"
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=out["job"])
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE and job["RoleArn"] == ROLE
    assert job["HyperParameters"] == {"num_round": "5", "algorithm": "xgboost"}
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels == {"train": "s3://models/data/train/", "validation": "s3://models/data/validation/"}
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://models/out"


def test_local_training_needs_a_train_folder(tmp_path: Path) -> None:
    pytest.importorskip("sagemaker.core.training.configs", reason="the sagemaker SDK is not installed")
    from deploy.sagemaker.training import train

    with pytest.raises(DeployError, match="has no train/ folder"):
        train(image="mlship:x", data=str(tmp_path), hyperparameters={}, role=ROLE, local_root=tmp_path / "root")


def test_a_refused_create_is_a_named_failure(aws_env: str, model_tar: Path) -> None:
    with pytest.raises(DeployError, match="preparing release gender-.* failed .*NoSuchBucket.*; nothing serves"):
        endpoint.deploy(_aws(aws_env), endpoint.Release(IMAGE, model_tar, "no-such-bucket", "gender", ROLE))
