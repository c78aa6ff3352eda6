"""The SageMaker requests a deploy sends, as the API's own dictionaries (PascalCase, exactly what
`botocore` validates): production variants, data capture, async inference, and the guarded update's
`DeploymentConfig`. Pure functions of the options, so the tests can compare them with what is sent
(the explainer's `ExplainerConfig` depends on the model too: deploy/sagemaker/clarify.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy.sagemaker.clarify import ClarifyOptions

TRAFFIC_TYPES = ("CANARY", "LINEAR", "ALL_AT_ONCE")


@dataclass(frozen=True)
class Guardrails:
    """BlueGreenUpdatePolicy: how traffic moves to the new fleet, and how long it bakes."""

    traffic: str = "CANARY"
    step_percent: int = 10  # canary size or linear step, in percent of the fleet's capacity
    wait_seconds: int = 300  # baking period after each shift
    termination_wait_seconds: int = 120  # the old fleet stays up this long after the last shift
    max_execution_seconds: int = 3600  # SageMaker's bounds: 600..28800


@dataclass(frozen=True)
class Options:
    """Everything the endpoint config can carry besides the model."""

    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    capture_s3_uri: str | None = None
    capture_percent: int = 100
    serverless_memory_mb: int | None = None
    serverless_max_concurrency: int = 5
    async_output_s3_uri: str | None = None
    ab_weight: float | None = None  # the new model's share when the current one keeps a variant
    guardrails: Guardrails = field(default_factory=Guardrails)
    clarify: ClarifyOptions | None = None  # ExplainerConfig (SageMaker Clarify's online explainer)


def variant(name: str, model: str, weight: float, options: Options) -> dict[str, Any]:
    out: dict[str, Any] = {"VariantName": name, "ModelName": model, "InitialVariantWeight": weight}
    if options.serverless_memory_mb is not None:
        out["ServerlessConfig"] = {"MemorySizeInMB": options.serverless_memory_mb,
                                   "MaxConcurrency": options.serverless_max_concurrency}
    else:
        out["InstanceType"] = options.instance_type
        out["InitialInstanceCount"] = options.instance_count
    return out


def production_variants(model: str, options: Options, current_model: str | None) -> list[dict[str, Any]]:
    """One variant with all traffic, or an A/B split: the model serving now keeps 1 - ab_weight."""
    if options.ab_weight is None:
        return [variant("AllTraffic", model, 1.0, options)]
    if current_model is None:
        raise ValueError("an A/B split needs a model serving now: the endpoint does not exist yet")
    return [variant("Champion", current_model, round(1.0 - options.ab_weight, 6), options),
            variant("Challenger", model, options.ab_weight, options)]


def data_capture(options: Options) -> dict[str, Any] | None:
    if options.capture_s3_uri is None:
        return None
    return {"EnableCapture": True, "InitialSamplingPercentage": options.capture_percent,
            "DestinationS3Uri": options.capture_s3_uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"],
                                         "JsonContentTypes": ["application/json", "application/jsonlines"]}}


def async_inference(options: Options) -> dict[str, Any] | None:
    if options.async_output_s3_uri is None:
        return None
    return {"OutputConfig": {"S3OutputPath": options.async_output_s3_uri}}


def deployment_config(guard: Guardrails, alarms: list[str]) -> dict[str, Any]:
    """UpdateEndpoint's DeploymentConfig: blue/green with traffic shifting, rolled back by the alarms."""
    if guard.traffic not in TRAFFIC_TYPES:
        raise ValueError(f"traffic must be one of {', '.join(TRAFFIC_TYPES)}, not {guard.traffic!r}")
    routing: dict[str, Any] = {"Type": guard.traffic, "WaitIntervalInSeconds": guard.wait_seconds}
    step = {"Type": "CAPACITY_PERCENT", "Value": guard.step_percent}
    if guard.traffic == "CANARY":
        routing["CanarySize"] = step
    elif guard.traffic == "LINEAR":
        routing["LinearStepSize"] = step
    policy = {"TrafficRoutingConfiguration": routing,
              "TerminationWaitInSeconds": guard.termination_wait_seconds,
              "MaximumExecutionTimeoutInSeconds": guard.max_execution_seconds}
    return {"BlueGreenUpdatePolicy": policy,
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]}}
