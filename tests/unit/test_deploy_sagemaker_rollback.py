"""A guarded update SageMaker rolls back (an alarm fired while baking): the deploy says the old
config serves only once DescribeEndpoint shows the endpoint InService on it, not when RollingBack
first shows. botocore's Stubber hands out the DescribeEndpoint answers in order and checks each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.errors import DeployError
from deploy.sagemaker import endpoint, rollout
from tests.unit.test_deploy_sagemaker import (  # noqa: F401  (aws_env, model_tar, stamped: fixtures)
    CANARY,
    NEW,
    OLD,
    _answer,
    _aws,
    _described,
    _release,
    _stubbed,
    _update_stubs,
    aws_env,
    model_tar,
    stamped,
)


def _wait(sm: Any, sleeps: list[float], timeout: float = 60) -> DeployError:
    with pytest.raises(DeployError) as caught:
        rollout.wait(sm, "gender", NEW, timeout, 5, sleeps.append, previous=OLD)
    return caught.value


def test_a_rollback_is_waited_for_until_the_old_config_is_in_service() -> None:
    sm, stub = _stubbed("sagemaker")
    for status, config in (("Updating", OLD), ("RollingBack", NEW), ("RollingBack", NEW),
                           ("RollingBack", OLD), ("InService", OLD)):
        stub.add_response("describe_endpoint", _described(status, config, "alarm gender-5xx tripped"))
    sleeps: list[float] = []
    err = _wait(sm, sleeps)
    stub.assert_no_pending_responses()  # it read on until InService on OLD, and no further
    assert sleeps == [5, 5, 5, 5]
    assert f"rolled back from {NEW} (alarm gender-5xx tripped)" in str(err)
    assert str(err).endswith(f"; {OLD} serves")


def test_a_rollback_that_fails_is_not_reported_as_the_old_config_serving() -> None:
    sm, stub = _stubbed("sagemaker")
    stub.add_response("describe_endpoint", _described("RollingBack", NEW, "alarm tripped"))
    stub.add_response("describe_endpoint", _described("UpdateRollbackFailed", NEW, "rollback timed out"))
    err = _wait(sm, [])
    stub.assert_no_pending_responses()
    assert "the rollback from" in str(err) and "manual repair" in str(err) and f"{OLD} serves" not in str(err)


class _StillRollingBack:
    """DescribeEndpoint that never gets past RollingBack (how often it is asked depends on the clock)."""

    def __init__(self) -> None:
        self.calls = 0

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        self.calls += 1
        return _described("RollingBack", NEW, "alarm tripped")


def test_a_rollback_that_does_not_finish_in_time_says_so() -> None:
    sm = _StillRollingBack()
    err = _wait(sm, [], timeout=0.2)  # the recorded sleeps take no time: the clock runs out
    assert sm.calls > 1
    assert f"still RollingBack on {NEW}" in str(err) and f"the rollback to {OLD} has not finished" in str(err)
    assert f"{OLD} serves" not in str(err)


def test_the_deploy_reports_the_rollback_once_it_has_finished(
        aws_env: str, model_tar: Path, stamped: None) -> None:  # noqa: F811
    sm, stub = _stubbed("sagemaker")
    _update_stubs(stub, model_tar, CANARY)
    for status, config in (("Updating", OLD), ("RollingBack", NEW), ("RollingBack", NEW), ("InService", OLD)):
        stub.add_response("describe_endpoint", _described(status, config, "alarm tripped"))
    with pytest.raises(DeployError, match=f"rolled back from {NEW} .*alarm tripped.*; {OLD} serves$"):
        endpoint.deploy(_aws(aws_env, sm=sm), _release(model_tar, options=CANARY))
    stub.assert_no_pending_responses()


# --- what a client of the endpoint sees (the pipeline's smoke test: jenkins.release smoke) ---------
def _serving(stub: Any, image: str) -> None:
    stub.add_response("describe_endpoint", _described("InService", NEW))
    stub.add_response("describe_endpoint_config", {
        "EndpointConfigName": NEW, "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:1:endpoint-config/{NEW}",
        "ProductionVariants": [{"VariantName": "blue", "ModelName": NEW}], "CreationTime": "2026-12-01T00:00:00Z"})
    stub.add_response("describe_model", {"ModelName": NEW, "ModelArn": f"arn:aws:sagemaker:us-east-1:1:model/{NEW}",
                                         "PrimaryContainer": {"Image": image}, "CreationTime": "2026-12-01T00:00:00Z"})


def test_the_client_smoke_test_checks_the_image_and_every_kind_of_example() -> None:
    sm, stub = _stubbed("sagemaker")
    runtime, answers = _stubbed("sagemaker-runtime")
    _serving(stub, "reg/mlship:new")
    for n in (2, 1):  # the pair records together, the top-K record alone
        answers.add_response("invoke_endpoint", _answer(n))
    examples = [{"user": "u1", "item": "m1"}, {"user": "u1", "item": "m2"}, {"user": "u2", "k": 5}]
    rollout.client_smoke(sm, runtime, "gender", "reg/mlship:new", examples)
    stub.assert_no_pending_responses()
    answers.assert_no_pending_responses()
    _serving(stub, "reg/mlship:old")
    with pytest.raises(DeployError, match=r"endpoint gender serves \['reg/mlship:old'\], not reg/mlship:new"):
        rollout.client_smoke(sm, runtime, "gender", "reg/mlship:new", examples)
    _serving(stub, "reg/mlship:new")
    answers.add_response("invoke_endpoint", _answer(1))
    with pytest.raises(DeployError, match="InvokeEndpoint gender: 2 examples sent, 1 predictions back"):
        rollout.client_smoke(sm, runtime, "gender", "reg/mlship:new", examples)
