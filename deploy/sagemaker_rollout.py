"""Moving an endpoint to a new config and knowing honestly where it ended.

SageMaker reports a failed update by leaving the endpoint InService on the OLD config with a
FailureReason; it rolls a guarded update back (RollingBack) when an alarm fires; and it can end in
UpdateRollbackFailed. Each of those is a failure here, reported as soon as it is seen. The smoke test
sends the model's own warm-up examples through sagemaker-runtime and checks one prediction per
example comes back; if it fails, the endpoint goes back to the config it served before."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from deploy.errors import DeployError
from deploy.tarball import example_requests

BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating")


def _reason(desc: dict[str, Any]) -> str:
    return str(desc.get("FailureReason") or "no FailureReason given")


def current(sm: Any, endpoint: str) -> dict[str, Any] | None:
    """The endpoint's description, None if it does not exist; refuses an endpoint we cannot update."""
    try:
        desc: dict[str, Any] = sm.describe_endpoint(EndpointName=endpoint)
    except sm.exceptions.ClientError as exc:
        if "Could not find endpoint" in str(exc):
            return None
        raise
    status = desc["EndpointStatus"]
    if status in BUSY:
        raise DeployError(f"endpoint {endpoint} is {status} (config {desc['EndpointConfigName']}): another "
                          "change is under way; nothing was changed, try again when it is InService")
    if status in ("Failed", "OutOfService", "UpdateRollbackFailed"):
        raise DeployError(f"endpoint {endpoint} is {status} ({_reason(desc)}); it cannot be updated: "
                          "delete it or repair it first; nothing was changed")
    return desc


def wait(sm: Any, endpoint: str, new_config: str, timeout: float, poll: float,
         sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll until the endpoint settles; return its description only if it serves new_config."""
    deadline = time.monotonic() + timeout
    while True:
        desc: dict[str, Any] = sm.describe_endpoint(EndpointName=endpoint)
        status, serving = desc["EndpointStatus"], desc.get("EndpointConfigName")
        if status == "RollingBack":
            raise DeployError(f"endpoint {endpoint} is rolling back from {new_config} ({_reason(desc)}); "
                              f"an alarm or a failed health check stopped the update; {serving} serves")
        if status == "UpdateRollbackFailed":
            raise DeployError(f"endpoint {endpoint}: the rollback from {new_config} failed "
                              f"({_reason(desc)}); the endpoint needs a manual repair")
        if status in ("Failed", "OutOfService"):
            raise DeployError(f"endpoint {endpoint} is {status} ({_reason(desc)}); nothing serves")
        if status == "InService":
            if serving != new_config:
                raise DeployError(f"update of {endpoint} to {new_config} failed ({_reason(desc)}); "
                                  f"{serving} still serves")
            return desc
        if time.monotonic() > deadline:
            raise DeployError(f"endpoint {endpoint} still {status} after {timeout:.0f}s; {serving} serves")
        sleep(poll)


def smoke(runtime: Any, endpoint: str, examples: list[dict[str, Any]]) -> str | None:
    """None if every example got a prediction back; otherwise what was wrong."""
    for batch in example_requests(examples):
        why = _smoke_one(runtime, endpoint, batch)
        if why is not None:
            return why
    return None


def _smoke_one(runtime: Any, endpoint: str, examples: list[dict[str, Any]]) -> str | None:
    try:
        out = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                      Accept="application/json", Body=json.dumps({"instances": examples}))
        body = out["Body"].read()
    except Exception as exc:  # any failure to get an answer is a failed smoke test
        return f"InvokeEndpoint failed: {exc}"
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError):
        return f"the answer is not {{\"predictions\": [...]}}: {body[:200]!r}"
    if not isinstance(predictions, list) or len(predictions) != len(examples):
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        return f"{len(examples)} examples sent, {got} predictions back"
    if not all(isinstance(p, dict) and p for p in predictions):
        return "a prediction is empty or not an object"
    return None


def roll_back(sm: Any, endpoint: str, previous: str, failed: str, why: str, timeout: float, poll: float,
              sleep: Callable[[float], None] = time.sleep) -> DeployError:
    """Put the previous config back (all at once: it ran fine before) and describe what serves."""
    try:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=previous)
        wait(sm, endpoint, previous, timeout, poll, sleep)
    except Exception as exc:
        return DeployError(f"{failed} on {endpoint} failed its smoke test ({why}); the rollback to "
                           f"{previous} failed too: {exc}")
    return DeployError(f"{failed} on {endpoint} failed its smoke test ({why}); rolled back, "
                       f"{previous} serves")
