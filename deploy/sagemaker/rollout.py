"""Moving an endpoint to a new config and knowing honestly where it ended.

SageMaker reports a failed update by leaving the endpoint InService on the OLD config with a
FailureReason; it rolls a guarded update back (RollingBack) when an alarm fires; and it can end in
UpdateRollbackFailed. Each of those is a failure here, reported as soon as it is seen, except that a
rollback is reported once it has finished: the old config serves only when the endpoint is InService
on it again. The smoke test
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


def _broken(endpoint: str, new_config: str, desc: dict[str, Any]) -> DeployError | None:
    """The statuses that end a wait for good, whatever it waits for."""
    status = desc["EndpointStatus"]
    if status == "UpdateRollbackFailed":
        return DeployError(f"endpoint {endpoint}: the rollback from {new_config} failed "
                           f"({_reason(desc)}); the endpoint needs a manual repair")
    if status in ("Failed", "OutOfService"):
        return DeployError(f"endpoint {endpoint} is {status} ({_reason(desc)}); nothing serves")
    return None


def wait(sm: Any, endpoint: str, new_config: str, timeout: float, poll: float,
         sleep: Callable[[float], None] = time.sleep, previous: str | None = None) -> dict[str, Any]:
    """Poll until the endpoint settles; return its description only if it serves new_config.
    `previous` is the config an update started from, the one a rollback returns to."""
    deadline = time.monotonic() + timeout
    while True:
        desc: dict[str, Any] = sm.describe_endpoint(EndpointName=endpoint)
        status, serving = desc["EndpointStatus"], desc.get("EndpointConfigName")
        if status == "RollingBack":
            raise _rolled_back(sm, endpoint, new_config, previous, desc, timeout, poll, sleep)
        if (broken := _broken(endpoint, new_config, desc)) is not None:
            raise broken
        if status == "InService":
            if serving != new_config:
                raise DeployError(f"update of {endpoint} to {new_config} failed ({_reason(desc)}); "
                                  f"{serving} still serves")
            return desc
        if time.monotonic() > deadline:
            raise DeployError(f"endpoint {endpoint} still {status} after {timeout:.0f}s; {serving} serves")
        sleep(poll)


def _rolled_back(sm: Any, endpoint: str, new_config: str, previous: str | None, desc: dict[str, Any],
                 timeout: float, poll: float, sleep: Callable[[float], None]) -> DeployError:
    """SageMaker is rolling the update back: the old config serves again only once the endpoint is
    InService on it, so that is what this waits for before saying so."""
    why = (f"endpoint {endpoint} rolled back from {new_config} ({_reason(desc)}): an alarm or a failed "
           "health check stopped the update")
    if previous is None:  # nothing to return to (a new endpoint is not rolled back)
        return DeployError(f"{why}; nothing served before it")
    # A deadline of its own: the old fleet is still up, so this is quick unless something is wrong.
    deadline = time.monotonic() + timeout
    while True:
        status, serving = desc["EndpointStatus"], desc.get("EndpointConfigName")
        if status == "InService" and serving == previous:
            return DeployError(f"{why}; {previous} serves")
        if (broken := _broken(endpoint, new_config, desc)) is not None:
            return broken
        if time.monotonic() > deadline:
            return DeployError(f"{why}; still {status} on {serving} after {timeout:.0f}s: the rollback "
                               f"to {previous} has not finished")
        sleep(poll)
        desc = sm.describe_endpoint(EndpointName=endpoint)


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


def client_smoke(sm: Any, runtime: Any, endpoint: str, image: str, examples: list[dict[str, Any]]) -> None:
    """What a client of the endpoint sees after a deploy: it is InService, a variant runs
    ``image``, and every stored example predicts through InvokeEndpoint (`smoke`). Raises
    DeployError saying what is wrong."""
    try:
        desc = sm.describe_endpoint(EndpointName=endpoint)
    except sm.exceptions.ClientError as exc:
        raise DeployError(f"endpoint {endpoint} cannot be described: {exc}") from None
    if desc["EndpointStatus"] != "InService":
        raise DeployError(f"endpoint {endpoint} is {desc['EndpointStatus']}, not InService")
    config = sm.describe_endpoint_config(EndpointConfigName=desc["EndpointConfigName"])
    images = {(sm.describe_model(ModelName=v["ModelName"]).get("PrimaryContainer") or {}).get("Image")
              for v in config["ProductionVariants"]}
    if image not in images:
        raise DeployError(f"endpoint {endpoint} serves {sorted(map(str, images))}, not {image}")
    why = smoke(runtime, endpoint, examples)
    if why is not None:
        raise DeployError(f"InvokeEndpoint {endpoint}: {why}")


def roll_back(sm: Any, endpoint: str, previous: str, failed: str, why: str, timeout: float, poll: float,
              sleep: Callable[[float], None] = time.sleep) -> DeployError:
    """Put the previous config back (all at once: it ran fine before) and describe what serves."""
    try:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=previous)
        wait(sm, endpoint, previous, timeout, poll, sleep, previous=failed)
    except Exception as exc:
        return DeployError(f"{failed} on {endpoint} failed its smoke test ({why}); the rollback to "
                           f"{previous} failed too: {exc}")
    return DeployError(f"{failed} on {endpoint} failed its smoke test ({why}); rolled back, "
                       f"{previous} serves")
