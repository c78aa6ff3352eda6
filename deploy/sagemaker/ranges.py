"""The deploy's options against the ranges SageMaker's API reference gives them, checked before
anything is described, uploaded or created. AWS refuses an out-of-range value only when the request
carrying it is sent, and UpdateEndpoint's DeploymentConfig (the guardrails) goes last: by then the
release's model, endpoint config and alarms exist.

The ranges (SageMaker API reference, and botocore's sagemaker-2017-07-24 model where it has them):
TrafficRoutingConfig.WaitIntervalInSeconds 0..3600; BlueGreenUpdatePolicy.TerminationWaitInSeconds
0..3600 and MaximumExecutionTimeoutInSeconds 600..28800, "larger than the total waiting time";
CanarySize at most 50% of the variant's instances, LinearStepSize 10-50% (CapacitySize.Value >= 1);
ProductionVariant.InitialInstanceCount >= 1; ServerlessConfig MemorySizeInMB 1024..6144 in 1 GB steps,
MaxConcurrency 1..200; DataCaptureConfig.InitialSamplingPercentage 0..100; S3 URIs
`(https|s3)://...` of at most 512 characters; EndpointName, EndpointConfigName and ModelName at most
63 letters, digits and hyphens; Application Auto Scaling's MinCapacity >= 1 for endpoint variants.
AutoRollbackConfiguration takes 1..10 alarms: the deploy always sends its two. The deploy's own wait
(--wait-seconds, which the timeout takes clamped to 600..28800) must outlast the update's waits as well:
under 600 s the clamped timeout passes, but the deploy would stop waiting before the update could end.
ContainerDefinition.Environment takes at most 100 variables, names `[a-zA-Z_][a-zA-Z0-9_]*` and values
of at most 1024 characters; the image itself refuses a value it cannot parse at start-up, which the
deploy checks first with the image's own settings. The explainer's options: deploy/sagemaker/clarify.py."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from deploy.errors import DeployError
from deploy.sagemaker import clarify
from deploy.sagemaker.alarms import AlarmLimits, Scaling
from deploy.sagemaker.requests import TRAFFIC_TYPES, Guardrails, Options

NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
NAME_MAX = 63
RELEASE_SUFFIX = len("-20261201-090000")  # a release is named <endpoint>-<UTC stamp>
S3_URI = re.compile(r"(https|s3)://[^/].*")
S3_URI_MAX = 512
STEP_PERCENT = {"CANARY": (1, 50), "LINEAR": (10, 50)}
SERVERLESS_MEMORY_MB = (1024, 6144)
ENV_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
ENV_MAX, ENV_VALUE_MAX = 100, 1024
DEPLOY_SETS = ("MLSHIP_RELEASE",)  # the deploy's own variables: the release's name


def _outside(option: str, value: float, low: float, high: float | None, field: str) -> list[str]:
    if low <= value and (high is None or value <= high):
        return []
    span = f"{low}..{high}" if high is not None else f"at least {low}"
    return [f"{option} {value} is outside {span} ({field})"]


def shifts(guard: Guardrails) -> int:
    """How many traffic shifts an update makes; each is followed by a baking period (the canary's
    second shift too: SageMaker bakes the full fleet once more before it ends the update)."""
    if guard.traffic == "CANARY":
        return 2
    if guard.traffic == "LINEAR":
        return math.ceil(100 / guard.step_percent)
    return 1


def _guardrails(guard: Guardrails, wait_seconds: float | None = None) -> list[str]:
    if guard.traffic not in TRAFFIC_TYPES:
        return [f"--traffic {guard.traffic} is not one of {', '.join(TRAFFIC_TYPES)}"]
    found = [*_outside("--bake-seconds", guard.wait_seconds, 0, 3600,
                       "TrafficRoutingConfig.WaitIntervalInSeconds"),
             *_outside("--termination-wait-seconds", guard.termination_wait_seconds, 0, 3600,
                       "BlueGreenUpdatePolicy.TerminationWaitInSeconds"),
             *_outside("--wait-seconds", guard.max_execution_seconds, 600, 28800,
                       "BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds")]
    if guard.traffic in STEP_PERCENT:
        low, high = STEP_PERCENT[guard.traffic]
        size = "CanarySize" if guard.traffic == "CANARY" else "LinearStepSize"
        found += _outside(f"--step-percent (--traffic {guard.traffic})", guard.step_percent, low, high,
                          f"TrafficRoutingConfig.{size}, CAPACITY_PERCENT of the variant's instances")
    if found:
        return found  # the total below means nothing with a value out of range
    n = shifts(guard)
    total = n * guard.wait_seconds + guard.termination_wait_seconds
    if total >= guard.max_execution_seconds:
        return [f"--traffic {guard.traffic} makes {n} shift(s), each baked --bake-seconds "
                f"{guard.wait_seconds}, then --termination-wait-seconds {guard.termination_wait_seconds}: "
                f"{total} s, which must stay under MaximumExecutionTimeoutInSeconds "
                f"{guard.max_execution_seconds} (--wait-seconds, 600..28800)"]
    if wait_seconds is not None and wait_seconds <= total:  # under 600 s the timeout above is 600
        return [f"--wait-seconds {wait_seconds:g} must be longer than the update's total wait: --traffic "
                f"{guard.traffic} makes {n} shift(s), each baked --bake-seconds {guard.wait_seconds}, then "
                f"--termination-wait-seconds {guard.termination_wait_seconds}: {total} s (the deploy would "
                "stop waiting before the update could end)"]
    return []


def _s3(option: str, uri: str | None) -> list[str]:
    if uri is None or (S3_URI.fullmatch(uri) and len(uri) <= S3_URI_MAX):
        return []
    return [f"{option} {uri!r} is not an s3:// (or https://) URI of at most {S3_URI_MAX} characters"]


def _endpoint(endpoint: str) -> list[str]:
    longest = NAME_MAX - RELEASE_SUFFIX
    if NAME.fullmatch(endpoint) and len(endpoint) <= longest:
        return []
    return [f"--endpoint {endpoint!r} must be 1..{longest} letters, digits and hyphens, starting and ending "
            f"with a letter or digit (its releases, {endpoint}-<UTC stamp>, name models and endpoint "
            f"configs: at most {NAME_MAX})"]


def _environment(environment: Mapping[str, str]) -> list[str]:
    """The model's container environment: what the API takes, and what the image starts with."""
    from container.settings import Settings, SettingsError

    found = [f"--environment {name}: not a variable name ([a-zA-Z_][a-zA-Z0-9_]*, at most {ENV_VALUE_MAX} "
             "characters; ContainerDefinition.Environment)" for name in environment
             if not (ENV_NAME.fullmatch(name) and len(name) <= ENV_VALUE_MAX)]
    found += [f"--environment {name}: the value has {len(value)} characters, more than {ENV_VALUE_MAX}"
              for name, value in environment.items() if len(value) > ENV_VALUE_MAX]
    found += [f"--environment {name}: the deploy sets it (the release's name)" for name in DEPLOY_SETS
              if name in environment]
    # the explainer may add SAGEMAKER_INFERENCE_OUTPUT: one place kept for it
    if len(environment) + len(DEPLOY_SETS) + 1 > ENV_MAX:
        found.append(f"--environment: {len(environment)} variables; with the deploy's own the model may "
                     f"carry at most {ENV_MAX} (ContainerDefinition.Environment)")
    if environment:
        try:
            Settings.from_env(environment)
        except SettingsError as exc:  # the image would refuse to start: say it now
            found.append(f"--environment {exc} (the image refuses it at start-up)")
    return found


def problems(endpoint: str, options: Options, limits: AlarmLimits, scaling: Scaling | None,
             wait_seconds: float | None = None, environment: Mapping[str, str] | None = None) -> list[str]:
    """Every option out of its range, each naming the option, its range and the API field;
    `wait_seconds`, the deploy's own wait (--wait-seconds), must outlast a guarded update's waits;
    `environment`, the model's container environment (--environment), must be one the image starts with."""
    found = _endpoint(endpoint)
    if options.serverless_memory_mb is None:
        found += _outside("--instance-count", options.instance_count, 1, None,
                          "ProductionVariant.InitialInstanceCount")
        # only updates of instance endpoints carry the guardrails (serverless ones go without)
        found += _guardrails(options.guardrails, wait_seconds)
    else:
        low, high = SERVERLESS_MEMORY_MB
        found += _outside("--serverless-memory-mb", options.serverless_memory_mb, low, high,
                          "ServerlessConfig.MemorySizeInMB")
        if options.serverless_memory_mb % 1024:
            found.append(f"--serverless-memory-mb {options.serverless_memory_mb} is not a multiple of 1024 "
                         "(ServerlessConfig.MemorySizeInMB: 1 GB steps)")
        found += _outside("--serverless-max-concurrency", options.serverless_max_concurrency, 1, 200,
                          "ServerlessConfig.MaxConcurrency")
    if options.capture_s3_uri is not None:
        found += _outside("--capture-percent", options.capture_percent, 0, 100,
                          "DataCaptureConfig.InitialSamplingPercentage")
    found += _s3("--capture-s3-uri", options.capture_s3_uri)
    found += _s3("--async-output-s3-uri", options.async_output_s3_uri)
    if options.ab_weight is not None and not 0 < options.ab_weight < 1:
        found.append(f"--ab-weight {options.ab_weight} is outside 0..1, both excluded (each variant's "
                     "InitialVariantWeight: a weight of 0 or 1 leaves one variant without traffic)")
    # The alarms compare with >=: a limit of 0 trips on every minute with data and rolls every update back.
    found += _outside("--max-5xx", limits.errors_5xx, 1, None, "the 5xx alarm's threshold")
    found += _outside("--max-latency-ms", limits.latency_ms, 1, None, "the latency alarm's threshold")
    if scaling is not None:
        found += _outside("--autoscale MIN", scaling.min_instances, 1, None,
                          "RegisterScalableTarget.MinCapacity for an endpoint variant")
        if scaling.max_instances < scaling.min_instances:
            found.append(f"--autoscale {scaling.min_instances}:{scaling.max_instances}: MAX is below MIN "
                         "(RegisterScalableTarget.MaxCapacity)")
        if scaling.invocations_per_instance <= 0:
            found.append(f"--invocations-per-instance {scaling.invocations_per_instance} must be above 0 "
                         "(TargetTrackingScalingPolicyConfiguration.TargetValue)")
    found += _environment(environment or {})
    found += clarify.problems(options.clarify, serverless=options.serverless_memory_mb is not None,
                              asynchronous=options.async_output_s3_uri is not None,
                              ab_split=options.ab_weight is not None)
    return found


def check(endpoint: str, options: Options, limits: AlarmLimits, scaling: Scaling | None,
          wait_seconds: float | None = None, environment: Mapping[str, str] | None = None) -> None:
    """Raise a DeployError naming every option out of range; nothing has been sent yet."""
    found = problems(endpoint, options, limits, scaling, wait_seconds, environment)
    if found:
        raise DeployError(f"options out of range: {'; '.join(found)}; nothing was changed")
