"""Options out of the API's ranges are refused before the deploy sends anything: no describe, no
upload, no create. Every client is a botocore Stubber with nothing queued (any call would be
recorded, then refused), and the SDK's session hands out no clients."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from deploy.__main__ import main as deploy_main
from deploy.sagemaker import endpoint, ranges
from deploy.sagemaker.alarms import AlarmLimits, Scaling
from deploy.sagemaker.aws import Aws
from deploy.sagemaker.requests import Guardrails, Options
from tests.unit.test_deploy_sagemaker import (  # noqa: F401  (aws_env, model_tar, stamped: fixtures)
    IMAGE,
    OLD,
    ROLE,
    _aws,
    _described,
    _stubbed,
    aws_env,
    model_tar,
    stamped,
)


class _NoClients:
    """The session the SDK's resources would make their clients from: it must not be asked."""

    def client(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a client was made: {args}")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every AWS operation the deploy tries, on any of its clients."""
    seen: list[str] = []
    stubbed = {name: _stubbed(service)[0] for name, service in (
        ("sm", "sagemaker"), ("runtime", "sagemaker-runtime"), ("s3", "s3"), ("cloudwatch", "cloudwatch"),
        ("autoscaling", "application-autoscaling"))}
    for client in stubbed.values():
        client.meta.events.register("provide-client-params", lambda model, **_: seen.append(model.name))
    aws = Aws(session=_NoClients(), region="us-east-1", **stubbed)
    monkeypatch.setattr(Aws, "connect", classmethod(lambda cls, *a, **k: aws))
    return seen


def _argv(tmp_path: Path, *extra: str, endpoint: str = "gender") -> list[str]:
    tar = tmp_path / "model.tar.gz"
    tar.write_bytes(b"")  # never opened: the options are refused before
    return ["sagemaker", "--image-uri", IMAGE, "--model-tar", str(tar), "--bucket", "models",
            f"--endpoint={endpoint}", "--role", ROLE, *extra]


OUT_OF_RANGE = [
    (["--bake-seconds", "4000"], "--bake-seconds 4000 is outside 0..3600 (TrafficRoutingConfig.WaitIntervalInSeconds)"),
    (["--bake-seconds", "-1"], "--bake-seconds -1 is outside 0..3600"),
    (["--termination-wait-seconds", "3601"], "--termination-wait-seconds 3601 is outside 0..3600 (BlueGreenUpdatePolicy.TerminationWaitInSeconds)"),
    (["--traffic", "LINEAR", "--step-percent", "5"], "--step-percent (--traffic LINEAR) 5 is outside 10..50 (TrafficRoutingConfig.LinearStepSize"),
    (["--traffic", "LINEAR", "--step-percent", "60"], "--step-percent (--traffic LINEAR) 60 is outside 10..50"),
    (["--step-percent", "60"], "--step-percent (--traffic CANARY) 60 is outside 1..50 (TrafficRoutingConfig.CanarySize"),
    (["--step-percent", "0"], "--step-percent (--traffic CANARY) 0 is outside 1..50"),
    # 10 shifts of 360 s and 120 s more reach the 3600 s the update may take (--wait-seconds' default)
    (["--traffic", "LINEAR", "--step-percent", "10", "--bake-seconds", "360"],
     "--traffic LINEAR makes 10 shift(s), each baked --bake-seconds 360, then --termination-wait-seconds 120: "
     "3720 s, which must stay under MaximumExecutionTimeoutInSeconds 3600"),
    (["--bake-seconds", "1800"], "--traffic CANARY makes 2 shift(s)"),
    # under 600 s the update's timeout is 600 (clamped), but the deploy itself would stop waiting first
    (["--traffic", "ALL_AT_ONCE", "--bake-seconds", "0", "--wait-seconds", "100"],
     "--wait-seconds 100 must be longer than the update's total wait: --traffic ALL_AT_ONCE makes 1 shift(s), "
     "each baked --bake-seconds 0, then --termination-wait-seconds 120: 120 s"),
    (["--bake-seconds", "100", "--termination-wait-seconds", "60", "--wait-seconds", "260"],
     "--wait-seconds 260 must be longer than the update's total wait: --traffic CANARY makes 2 shift(s), "
     "each baked --bake-seconds 100, then --termination-wait-seconds 60: 260 s"),
    (["--traffic", "LINEAR", "--step-percent", "25", "--bake-seconds", "60", "--wait-seconds", "299.5"],
     "--wait-seconds 299.5 must be longer than the update's total wait: --traffic LINEAR makes 4 shift(s)"),
    (["--instance-count", "0"], "--instance-count 0 is outside at least 1 (ProductionVariant.InitialInstanceCount)"),
    (["--capture-s3-uri", "s3://models/capture", "--capture-percent", "101"],
     "--capture-percent 101 is outside 0..100 (DataCaptureConfig.InitialSamplingPercentage)"),
    (["--capture-s3-uri", "models/capture"], "--capture-s3-uri 'models/capture' is not an s3://"),
    (["--async-output-s3-uri", "s3://" + "a" * 510], "--async-output-s3-uri 's3://aaa"),
    (["--serverless-memory-mb", "512"], "--serverless-memory-mb 512 is outside 1024..6144 (ServerlessConfig.MemorySizeInMB)"),
    (["--serverless-memory-mb", "2000"], "--serverless-memory-mb 2000 is not a multiple of 1024"),
    (["--serverless-memory-mb", "2048", "--serverless-max-concurrency", "201"],
     "--serverless-max-concurrency 201 is outside 1..200 (ServerlessConfig.MaxConcurrency)"),
    (["--ab-weight", "1.5"], "--ab-weight 1.5 is outside 0..1, both excluded"),
    (["--ab-weight", "0"], "--ab-weight 0.0 is outside 0..1"),
    (["--max-5xx", "0"], "--max-5xx 0 is outside at least 1"),
    (["--max-latency-ms", "0"], "--max-latency-ms 0 is outside at least 1"),
    (["--autoscale", "0:2"], "--autoscale MIN 0 is outside at least 1 (RegisterScalableTarget.MinCapacity"),
    (["--autoscale", "3:2"], "--autoscale 3:2: MAX is below MIN"),
    (["--autoscale", "1:"], "--autoscale takes MIN:MAX, two whole numbers, not '1:'"),
    (["--autoscale", "1:2", "--invocations-per-instance", "0"], "--invocations-per-instance 0.0 must be above 0"),
]


@pytest.mark.parametrize("extra,message", OUT_OF_RANGE, ids=[" ".join(e) for e, _ in OUT_OF_RANGE])
def test_an_option_out_of_range_is_refused_before_anything_is_sent(
        tmp_path: Path, calls: list[str], capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    assert deploy_main(_argv(tmp_path, *extra)) == 1
    err = capsys.readouterr().err
    assert err.startswith("deploy: FAILED ") and message in err, err
    assert "nothing was changed" in err
    assert calls == []  # not even DescribeEndpoint, and certainly no create


@pytest.mark.parametrize("endpoint", ["a" * 48, "gender_v2", "-gender", "gender-"])
def test_an_endpoint_name_its_releases_cannot_carry_is_refused(
        tmp_path: Path, calls: list[str], capsys: pytest.CaptureFixture[str], endpoint: str) -> None:
    assert deploy_main(_argv(tmp_path, endpoint=endpoint)) == 1
    assert f"--endpoint {endpoint!r} must be 1..47 letters, digits and hyphens" in capsys.readouterr().err
    assert calls == []


def test_every_option_out_of_range_is_named_at_once(tmp_path: Path, calls: list[str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy_main(_argv(tmp_path, "--bake-seconds", "4000", "--termination-wait-seconds", "4000",
                             "--max-5xx", "0")) == 1
    err = capsys.readouterr().err
    assert all(o in err for o in ("--bake-seconds 4000", "--termination-wait-seconds 4000", "--max-5xx 0"))
    assert calls == []


@pytest.mark.parametrize("options", [
    Options(),  # the defaults
    Options(guardrails=Guardrails("CANARY", step_percent=50, wait_seconds=3600, termination_wait_seconds=3600,
                                  max_execution_seconds=28800)),
    Options(guardrails=Guardrails("LINEAR", step_percent=10, wait_seconds=300, termination_wait_seconds=0)),
    Options(guardrails=Guardrails("ALL_AT_ONCE", wait_seconds=0, termination_wait_seconds=0, max_execution_seconds=600)),
    Options(capture_s3_uri="s3://models/capture", capture_percent=0, ab_weight=0.2, instance_count=4),
    # the guardrails do not apply to serverless endpoints (their updates go without): not checked
    Options(serverless_memory_mb=6144, serverless_max_concurrency=200, guardrails=Guardrails(wait_seconds=4000)),
])
def test_options_at_the_edges_of_the_ranges_pass(options: Options) -> None:
    assert ranges.problems("gender", options, AlarmLimits(), Scaling(1, 1, 0.5)) == []
    assert ranges.problems("a" * 47, options, AlarmLimits(), None) == []


def test_the_deploys_own_wait_is_checked_against_the_updates_waits() -> None:
    guard = Guardrails("ALL_AT_ONCE", wait_seconds=0, termination_wait_seconds=120, max_execution_seconds=600)
    assert ranges.problems("gender", Options(guardrails=guard), AlarmLimits(), None, wait_seconds=121) == []
    [found] = ranges.problems("gender", Options(guardrails=guard), AlarmLimits(), None, wait_seconds=120)
    assert found.startswith("--wait-seconds 120 must be longer than the update's total wait") and "120 s" in found
    # the defaults (CANARY: two bakes of 300 s and 120 s more) against --wait-seconds' default, 3600
    assert ranges.problems("gender", Options(), AlarmLimits(), None, wait_seconds=3600) == []
    # serverless updates go without guardrails: nothing to outlast
    serverless = Options(serverless_memory_mb=2048, guardrails=guard)
    assert ranges.problems("gender", serverless, AlarmLimits(), None, wait_seconds=1) == []
    # within 600..28800 the timeout is --wait-seconds itself: one message, the timeout's
    long = Guardrails("CANARY", wait_seconds=400, termination_wait_seconds=0, max_execution_seconds=700)
    [found] = ranges.problems("gender", Options(guardrails=long), AlarmLimits(), None, wait_seconds=700)
    assert "MaximumExecutionTimeoutInSeconds 700" in found


def test_a_short_wait_seconds_is_refused_with_the_other_options_at_once(
        tmp_path: Path, calls: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy_main(_argv(tmp_path, "--traffic", "ALL_AT_ONCE", "--bake-seconds", "0",
                             "--wait-seconds", "60", "--max-5xx", "0")) == 1
    err = capsys.readouterr().err
    assert "--wait-seconds 60 must be longer than the update's total wait" in err and "--max-5xx 0" in err
    assert calls == []


def test_the_guardrails_are_checked_before_the_release_is_prepared_on_a_live_endpoint(
        aws_env: str, model_tar: Path, stamped: None) -> None:  # noqa: F811
    """The operator's case: LINEAR steps of 5% on an endpoint that serves. Before, the model went to
    S3 and the model, endpoint config and alarms were created, then UpdateEndpoint was refused."""
    import boto3

    sm, stub = _stubbed("sagemaker")
    stub.add_response("describe_endpoint", _described("InService", OLD))  # not even asked now
    linear = Options(guardrails=Guardrails("LINEAR", step_percent=5, wait_seconds=300))
    rel = endpoint.Release(IMAGE, model_tar, "models", "gender", ROLE, linear, poll_seconds=0, wait_seconds=60)
    with pytest.raises(endpoint.DeployError, match=r"--step-percent \(--traffic LINEAR\) 5 is outside 10..50"):
        endpoint.deploy(_aws(aws_env, sm=sm), rel)
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket="models")
    assert boto3.client("sagemaker").list_models()["Models"] == []
    assert boto3.client("sagemaker").list_endpoint_configs()["EndpointConfigs"] == []
    assert boto3.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


def test_the_stubbed_clients_record_what_is_sent(calls: list[str]) -> None:
    """The recorder itself: a call is seen (and the Stubber, with nothing queued, refuses it)."""
    from botocore.exceptions import StubResponseError

    aws = Aws.connect("us-east-1")
    assert dataclasses.is_dataclass(aws)
    with pytest.raises(StubResponseError):
        aws.sm.describe_endpoint(EndpointName="gender")
    assert calls == ["DescribeEndpoint"]
