"""The deploy targets, each once: the commands it adds to `python -m deploy` (its deploy, the
champion command the gate reads, and any other), which the command line and the pipeline's
release steps (jenkins.release) both read. A new target is a package beside deploy/sagemaker/
and deploy/vms/ whose command modules have `add_arguments(parser)` and `run(args) -> dict`, and a
row here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType

from deploy.sagemaker import champion as sagemaker_champion
from deploy.sagemaker import endpoint, training
from deploy.vms import champion as vms_champion
from deploy.vms import site


@dataclass(frozen=True)
class Target:
    """One deploy target: ``python -m deploy NAME`` rolls a release out, ``NAME-champion`` writes
    the model it serves for the gate, ``more`` holds its other commands by their full names."""

    name: str
    deploy: ModuleType
    champion: ModuleType
    more: Mapping[str, ModuleType] = field(default_factory=dict)

    @property
    def champion_command(self) -> str:
        return f"{self.name}-champion"

    def commands(self) -> dict[str, ModuleType]:
        return {self.name: self.deploy, self.champion_command: self.champion, **self.more}


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("sagemaker", endpoint, sagemaker_champion, {"sagemaker-train": training}),
    Target("vms", site, vms_champion),
)}
COMMANDS: dict[str, ModuleType] = {name: module for target in TARGETS.values()
                                   for name, module in target.commands().items()}
