"""Deploy to a SageMaker endpoint: guarded blue/green update, alarms, smoke test, rollback, pruning.

Model, endpoint config and a new endpoint go through the sagemaker SDK's resources
(`sagemaker.core.resources`); the guarded update goes through boto3's UpdateEndpoint with a
DeploymentConfig, which the SDK 3.27 cannot send (`ModelBuilder.deploy(update_endpoint=True)` raises
a TypeError). `--endpoint-url` points every client at another implementation (the tests use moto).
`--clarify-explanations` attaches SageMaker Clarify's online explainer (deploy/sagemaker/clarify.py)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.sagemaker import alarms, clarify, ranges, requests, rollout
from deploy.sagemaker.aws import Aws
from deploy.sagemaker.cleanup import prune
from deploy.tarball import warmup_examples


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


@dataclass(frozen=True)
class Release:
    image_uri: str
    model_tar: Path
    bucket: str
    endpoint: str
    role: str
    options: requests.Options = field(default_factory=requests.Options)
    limits: alarms.AlarmLimits = field(default_factory=alarms.AlarmLimits)
    scaling: alarms.Scaling | None = None
    keep: int = 3
    wait_seconds: float = 3600
    poll_seconds: float = 15
    environment: Mapping[str, str] = field(default_factory=dict)  # the model container's, besides ours


USER_MAPS = ("Environment",)  # maps whose keys are the user's (variable names), not API fields


def _snake(value: Any) -> Any:
    """An API request dictionary as the SDK's shapes spell their fields (snake_case)."""
    from sagemaker.core.utils.utils import pascal_to_snake

    if isinstance(value, dict):
        return {pascal_to_snake(k): v if k in USER_MAPS else _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def _create_model_and_config(aws: Aws, rel: Release, name: str, model_data: str,
                             variants: list[dict[str, Any]],
                             explainer: clarify.Explainer | None = None) -> None:
    """Through the SDK's resources, which validate the request against the API's shapes first."""
    from sagemaker.core import shapes
    from sagemaker.core.resources import EndpointConfig, Model

    environment = {**rel.environment, **(explainer.environment if explainer else {}), "MLSHIP_RELEASE": name}
    container = {"Image": rel.image_uri, "ModelDataUrl": model_data, "Environment": environment}
    Model.create(model_name=name,
                 primary_container=shapes.ContainerDefinition.model_validate(_snake(container)),
                 execution_role_arn=rel.role, session=aws.session, region=aws.region)
    capture, asynchronous = requests.data_capture(rel.options), requests.async_inference(rel.options)
    if rel.options.serverless_memory_mb is not None or explainer is not None:
        # The SDK 3.27 serialises memory_size_in_mb as "MemorySizeInMb" and max_payload_in_mb as
        # "MaxPayloadInMb", which the API refuses (it wants ...InMB), and drops a Seed of 0: such a
        # config goes through boto3 as it is.
        request: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": variants}
        fields = (("DataCaptureConfig", capture), ("AsyncInferenceConfig", asynchronous),
                  ("ExplainerConfig", explainer.config if explainer else None))
        request.update({k: v for k, v in fields if v})
        aws.sm.create_endpoint_config(**request)
        return
    extra: dict[str, Any] = {}
    if capture:
        extra["data_capture_config"] = shapes.DataCaptureConfig.model_validate(_snake(capture))
    if asynchronous:
        extra["async_inference_config"] = shapes.AsyncInferenceConfig.model_validate(_snake(asynchronous))
    EndpointConfig.create(endpoint_config_name=name, session=aws.session, region=aws.region,
                          production_variants=[shapes.ProductionVariant.model_validate(_snake(v))
                                               for v in variants], **extra)


def _first_model(aws: Aws, config: str) -> str:
    variants = aws.sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    return str(variants[0]["ModelName"])


def _progress(message: str) -> None:
    print(f"deploy: {message}", file=sys.stderr, flush=True)


def deploy(aws: Aws, rel: Release, sleep: Any = time.sleep,
           say: Callable[[str], None] = _progress) -> dict[str, Any]:
    """Create or update the endpoint to a new release; raises DeployError unless the new one serves."""
    from sagemaker.core.resources import Endpoint

    opts = rel.options
    # before any request: AWS would refuse late
    ranges.check(rel.endpoint, opts, rel.limits, rel.scaling, environment=rel.environment)
    explainer = clarify.plan(opts.clarify, rel.model_tar, rel.environment) if opts.clarify else None
    if explainer is not None:
        say(explainer.describe())
    before = rollout.current(aws.sm, rel.endpoint)  # refuses a busy or broken endpoint first
    previous = before["EndpointConfigName"] if before else None
    if previous and rel.scaling is None and (scaled := alarms.scaled_variants(aws.autoscaling, rel.endpoint)):
        raise DeployError(f"endpoint {rel.endpoint} autoscales variants {', '.join(scaled)}: an update must "
                          "deregister them; pass --autoscale MIN:MAX so the deploy registers them again; "
                          f"nothing was changed, {previous} serves")
    asynchronous = opts.async_output_s3_uri is not None
    examples = [] if asynchronous else warmup_examples(rel.model_tar)
    name = f"{rel.endpoint}-{_stamp()}"
    key = f"{rel.endpoint}/{name}/model.tar.gz"
    model_data = f"s3://{rel.bucket}/{key}"
    with _refused(f"preparing release {name}", previous):
        aws.s3.upload_file(str(rel.model_tar), rel.bucket, key)
        variants = requests.production_variants(name, opts, _first_model(aws, previous) if previous and
                                                opts.ab_weight is not None else None)
        _create_model_and_config(aws, rel, name, model_data, variants, explainer)
        alarm_names = alarms.create_alarms(aws.cloudwatch, rel.endpoint, name,
                                           [v["VariantName"] for v in variants], rel.limits)
    guarded = opts.serverless_memory_mb is None  # blue/green guardrails do not apply to serverless
    deployment = requests.deployment_config(opts.guardrails, alarm_names) if guarded else None
    unscaled: list[str] = []
    if previous is None:
        with _refused(f"CreateEndpoint {rel.endpoint} -> {name}", previous):
            Endpoint.create(endpoint_name=rel.endpoint, endpoint_config_name=name, session=aws.session,
                            region=aws.region)
        action = "created"
    else:
        unscaled = alarms.deregister(aws.autoscaling, rel.endpoint)
        update: dict[str, Any] = {"EndpointName": rel.endpoint, "EndpointConfigName": name}
        if deployment:
            update["DeploymentConfig"] = deployment
        try:
            aws.sm.update_endpoint(**update)
        except aws.sm.exceptions.ClientError as exc:
            _rescale(aws, rel, unscaled)
            raise DeployError(f"UpdateEndpoint {rel.endpoint} -> {name} was refused ({exc}); "
                              f"{previous} serves") from exc
        action = "updated"
    try:
        desc = rollout.wait(aws.sm, rel.endpoint, name, rel.wait_seconds, rel.poll_seconds, sleep,
                            previous=previous)
    except DeployError:
        _rescale(aws, rel, unscaled)  # the old config serves on: give it its scaling back
        raise
    smoke = "skipped: asynchronous endpoints answer through InvokeEndpointAsync" if asynchronous else "passed"
    if not asynchronous:
        why = (clarify.smoke(aws.runtime, rel.endpoint, examples, explainer.columns) if explainer
               else rollout.smoke(aws.runtime, rel.endpoint, examples))
        if why is not None:
            if previous is None:
                raise DeployError(f"{name} on {rel.endpoint} failed its smoke test ({why}); there is no "
                                  "earlier config to roll back to, so the failing release serves")
            err = rollout.roll_back(aws.sm, rel.endpoint, previous, name, why, rel.wait_seconds,
                                    rel.poll_seconds, sleep)
            _rescale(aws, rel, unscaled)
            raise err
    policies = _rescale(aws, rel, [v["VariantName"] for v in variants])
    in_use = {name, *(v["ModelName"] for v in variants)}
    removed = prune(aws.sm, aws.cloudwatch, rel.endpoint, rel.keep, in_use)
    return {"target": "sagemaker", "endpoint": rel.endpoint, "action": action, "model": name,
            "endpoint_config": desc["EndpointConfigName"], "previous_config": previous,
            "model_data": model_data, "image": rel.image_uri, "status": desc["EndpointStatus"],
            "variants": {v["VariantName"]: v["ModelName"] for v in variants},
            "deployment_config": deployment if action == "updated" else None, "alarms": alarm_names,
            "smoke_test": smoke, "autoscaling": policies, "removed_releases": removed,
            "explainer": explainer.summary() if explainer else None}


@contextlib.contextmanager
def _refused(what: str, serving: str | None) -> Iterator[None]:
    """An AWS error (or the SDK's validation of a request) as a DeployError saying what serves."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    # pydantic's ValidationError (the SDK checking a request) is a ValueError
    except (ClientError, BotoCoreError, Boto3Error, ValueError) as exc:
        raise DeployError(f"{what} failed ({exc}); {serving or 'nothing'} serves") from exc


def _rescale(aws: Aws, rel: Release, variants: list[str]) -> list[str]:
    if rel.scaling is None or rel.options.serverless_memory_mb is not None:
        return []
    return [alarms.register(aws.autoscaling, rel.endpoint, v, rel.scaling) for v in variants]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-uri", required=True)
    parser.add_argument("--model-tar", type=Path, required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--role", required=True)
    parser.add_argument("--instance-type", default="ml.m5.large")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--endpoint-url", help="another AWS implementation (moto server in tests)")
    g = parser.add_argument_group("guarded update (BlueGreenUpdatePolicy)")
    g.add_argument("--traffic", choices=requests.TRAFFIC_TYPES, default="CANARY")
    g.add_argument("--step-percent", type=int, default=10, help="canary size or linear step (%% of capacity)")
    g.add_argument("--bake-seconds", type=int, default=300, help="wait after each traffic shift")
    g.add_argument("--termination-wait-seconds", type=int, default=120)
    g.add_argument("--max-5xx", type=int, default=1, help="5xx errors per minute that roll back")
    g.add_argument("--max-latency-ms", type=int, default=500, help="mean model latency that rolls back")
    o = parser.add_argument_group("options")
    o.add_argument("--capture-s3-uri", help="DataCaptureConfig destination (s3://bucket/prefix)")
    o.add_argument("--capture-percent", type=int, default=100)
    o.add_argument("--autoscale", metavar="MIN:MAX", help="scalable target with a target-tracking policy")
    o.add_argument("--invocations-per-instance", type=float, default=1000.0)
    o.add_argument("--serverless-memory-mb", type=int, help="ServerlessConfig instead of instances")
    o.add_argument("--serverless-max-concurrency", type=int, default=5)
    o.add_argument("--async-output-s3-uri", help="AsyncInferenceConfig output path")
    o.add_argument("--ab-weight", type=float,
                   help="the new model's traffic share; the model serving now keeps the rest")
    o.add_argument("--keep-releases", type=int, default=3, help="releases kept; older ones are removed")
    o.add_argument("--wait-seconds", type=float, default=3600, help="longest wait for the endpoint to settle")
    o.add_argument("--poll-seconds", type=float, default=15, help="between DescribeEndpoint calls")
    o.add_argument("--environment", action="append", default=[], metavar="NAME=VALUE",
                   help="a variable of the model's container environment (repeatable)")
    c = parser.add_argument_group("explanations (SageMaker Clarify's online explainer, ExplainerConfig)")
    c.add_argument("--clarify-explanations", metavar="EXPR",
                   help="attach the explainer; EnableExplanations, a JMESPath boolean, e.g. '`true`'")
    c.add_argument("--clarify-baseline", type=Path, metavar="FILE",
                   help="header-less CSV rows instead of the model's explainer-baseline.csv")
    c.add_argument("--clarify-baseline-uri", metavar="S3",
                   help="ShapBaselineUri instead of an inline baseline")
    c.add_argument("--clarify-samples", type=int, metavar="N", help="NumberOfSamples (Kernel SHAP)")
    c.add_argument("--clarify-use-logit", action="store_true", help="UseLogit: attributions in log-odds")
    c.add_argument("--clarify-seed", type=int, metavar="N", help="Seed, for repeatable attributions")


def release_from(args: argparse.Namespace) -> Release:
    if not args.model_tar.is_file():
        raise DeployError(f"--model-tar {args.model_tar} does not exist")
    scaling = None
    if args.autoscale:
        low, _, high = args.autoscale.partition(":")
        if not (low.isdigit() and high.isdigit()):
            raise DeployError(f"--autoscale takes MIN:MAX, two whole numbers, not {args.autoscale!r}; "
                              "nothing was changed")
        scaling = alarms.Scaling(int(low), int(high), args.invocations_per_instance)
    guard = requests.Guardrails(args.traffic, args.step_percent, args.bake_seconds,
                                args.termination_wait_seconds, min(28800, max(600, int(args.wait_seconds))))
    explain = None
    if args.clarify_explanations is not None:
        explain = clarify.ClarifyOptions(args.clarify_explanations, args.clarify_baseline,
                                         args.clarify_baseline_uri, args.clarify_samples,
                                         args.clarify_use_logit, args.clarify_seed)
    elif any(getattr(args, o) not in (None, False) for o in ("clarify_baseline", "clarify_baseline_uri",
                                                              "clarify_samples", "clarify_use_logit",
                                                              "clarify_seed")):
        raise DeployError("the --clarify-* options shape the explainer --clarify-explanations EXPR attaches; "
                          "pass it too; nothing was changed")
    opts = requests.Options(args.instance_type, args.instance_count, args.capture_s3_uri,
                            args.capture_percent, args.serverless_memory_mb, args.serverless_max_concurrency,
                            args.async_output_s3_uri, args.ab_weight, guard, explain)
    return Release(args.image_uri, args.model_tar, args.bucket, args.endpoint, args.role, opts,
                   alarms.AlarmLimits(args.max_5xx, args.max_latency_ms), scaling, args.keep_releases,
                   args.wait_seconds, args.poll_seconds, _environment(args.environment))


def _environment(pairs: list[str]) -> dict[str, str]:
    environment: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise DeployError(f"--environment takes NAME=VALUE, not {pair!r}; nothing was changed")
        if name in environment:
            raise DeployError(f"--environment {name} is given twice; nothing was changed")
        environment[name] = value
    return environment


def run(args: argparse.Namespace) -> dict[str, Any]:
    rel = release_from(args)
    # --wait-seconds against the update's own waits too: the deploy would give up before the update
    # could end (deploy() leaves that out: the tests' stubbed endpoints settle at once)
    ranges.check(rel.endpoint, rel.options, rel.limits, rel.scaling, wait_seconds=rel.wait_seconds,
                 environment=rel.environment)
    return deploy(Aws.connect(args.region, args.endpoint_url), rel)
