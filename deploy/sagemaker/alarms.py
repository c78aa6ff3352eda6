"""CloudWatch alarms that roll a guarded update back, and the endpoint's autoscaling.

The alarms watch the endpoint's variants (SageMaker's metrics carry EndpointName and VariantName):
any invocation 5xx in a minute, or a mean model latency over the limit for two minutes. They are
named after the release, so a release's alarms go when its configs are pruned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAMESPACE = "AWS/SageMaker"


@dataclass(frozen=True)
class AlarmLimits:
    errors_5xx: int = 1  # invocation 5xx errors per minute that trip the alarm
    latency_ms: int = 500  # mean ModelLatency that trips it (two minutes in a row)


def alarm_names(release: str) -> list[str]:
    return [f"{release}-invocation-5xx", f"{release}-model-latency"]


def create_alarms(cloudwatch: Any, endpoint: str, release: str, variants: list[str],
                  limits: AlarmLimits) -> list[str]:
    """One alarm per metric over the variants (a metric-math sum), so any variant trips it."""
    five_xx, latency = alarm_names(release)
    for name, metric, stat, threshold, periods in (
            (five_xx, "Invocation5XXErrors", "Sum", float(limits.errors_5xx), 1),
            (latency, "ModelLatency", "Average", float(limits.latency_ms * 1000), 2)):  # microseconds
        queries: list[dict[str, Any]] = [
            {"Id": f"v{i}", "ReturnData": False, "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": [
                    {"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": v}]},
                "Period": 60, "Stat": stat}} for i, v in enumerate(variants)]
        ids = [q["Id"] for q in queries]
        combine = "+".join(ids) if stat == "Sum" else f"MAX([{','.join(ids)}])"
        queries.append({"Id": "total", "Expression": combine, "ReturnData": True})
        cloudwatch.put_metric_alarm(
            AlarmName=name, AlarmDescription=f"mlship: roll {endpoint} back from {release} ({metric})",
            Metrics=queries, ComparisonOperator="GreaterThanOrEqualToThreshold", Threshold=threshold,
            EvaluationPeriods=periods, DatapointsToAlarm=periods, TreatMissingData="notBreaching")
    return [five_xx, latency]


def delete_alarms(cloudwatch: Any, releases: list[str]) -> None:
    names = [n for r in releases for n in alarm_names(r)]
    for start in range(0, len(names), 100):  # DeleteAlarms takes at most 100 names
        cloudwatch.delete_alarms(AlarmNames=names[start:start + 100])


@dataclass(frozen=True)
class Scaling:
    min_instances: int = 1
    max_instances: int = 4
    invocations_per_instance: float = 1000.0  # per minute, SageMaker's predefined metric


def _resource(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def scaled_variants(autoscaling: Any, endpoint: str) -> list[str]:
    found = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    prefix = f"endpoint/{endpoint}/variant/"
    return [t["ResourceId"][len(prefix):] for t in found if t["ResourceId"].startswith(prefix)]


def deregister(autoscaling: Any, endpoint: str) -> list[str]:
    """SageMaker refuses to update an endpoint's variants while they are scalable targets."""
    variants = scaled_variants(autoscaling, endpoint)
    for v in variants:
        autoscaling.deregister_scalable_target(ServiceNamespace="sagemaker",
                                               ResourceId=_resource(endpoint, v), ScalableDimension=DIMENSION)
    return variants


def register(autoscaling: Any, endpoint: str, variant: str, scaling: Scaling) -> str:
    resource = _resource(endpoint, variant)
    autoscaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource,
                                         ScalableDimension=DIMENSION, MinCapacity=scaling.min_instances,
                                         MaxCapacity=scaling.max_instances)
    policy = f"{endpoint}-{variant}-invocations"
    autoscaling.put_scaling_policy(
        PolicyName=policy, ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling", TargetTrackingScalingPolicyConfiguration={
            "TargetValue": scaling.invocations_per_instance,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": 300, "ScaleOutCooldown": 60})
    return policy
