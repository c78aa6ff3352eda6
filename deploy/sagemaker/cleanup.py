"""Remove the models, endpoint configs and alarms of releases older than the last N.

A release is named `<endpoint>-<UTC stamp>` and owns one model, one endpoint config and its alarms
under that name. The config the endpoint serves is never removed, whatever its age."""

from __future__ import annotations

import re
from typing import Any

from deploy.sagemaker.alarms import delete_alarms


def releases(sm: Any, endpoint: str) -> list[str]:
    """This endpoint's releases, oldest first (the stamp sorts as time does)."""
    pattern = re.compile(rf"^{re.escape(endpoint)}-\d{{8}}-\d{{6}}$")
    names: list[str] = []
    for page in sm.get_paginator("list_endpoint_configs").paginate(NameContains=endpoint):
        names += [c["EndpointConfigName"] for c in page["EndpointConfigs"]]
    return sorted(n for n in names if pattern.match(n))


def prune(sm: Any, cloudwatch: Any, endpoint: str, keep: int, serving: set[str]) -> list[str]:
    """Delete all but the newest `keep` releases; `serving` names the config and models in use,
    which stay. Returns the releases removed."""
    known = releases(sm, endpoint)
    old = [r for r in known[:max(len(known) - keep, 0)] if r not in serving]
    for name in old:
        config = sm.describe_endpoint_config(EndpointConfigName=name)
        models = [v["ModelName"] for v in config["ProductionVariants"]]
        sm.delete_endpoint_config(EndpointConfigName=name)
        for model in models:
            if model == name and model not in serving:  # an A/B champion's model may still serve
                sm.delete_model(ModelName=model)
    if old:
        delete_alarms(cloudwatch, old)
    return old
