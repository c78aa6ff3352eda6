"""The training job as SageMaker describes it: config files, channels, hosts, SM_* variables.

Reads hyperparameters.json (every value a string, decoded JSON-aware), inputdataconfig.json,
resourceconfig.json and checkpointconfig.json, tolerating the sparse files SDK local mode
writes, and exports the SM_* variables AWS's training toolkit exports so user code written
for it keeps working.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from container.paths import MLPaths
from container.resources import available_cpus
from training.errors import PlatformError, UserError

# Keys the platform or the SDK adds; they are not the algorithm's hyperparameters.
RESERVED_PREFIX = "sagemaker_"
RESERVED_KEYS = {"_tuning_objective_metric", "default_user_module_name"}
TUNING_OBJECTIVE = "_tuning_objective_metric"


def decode_value(raw: Any) -> Any:
    """Decode one hyperparameter the way the training toolkit does: JSON if it parses."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw


def _read_json(path: Path, what: str, required: bool) -> Any:
    if not path.exists():
        if required:
            raise PlatformError(f"{what} is missing: expected {path}")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} at {path} is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class TrainingEnvironment:
    """Everything `train` knows about its job before reading any data."""

    paths: MLPaths
    hyperparameters: dict[str, Any]
    reserved: dict[str, Any]
    input_data_config: dict[str, dict[str, Any]]
    hosts: list[str]
    current_host: str
    instance_type: str
    network_interface: str
    checkpoint_dir: Path
    job_name: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: MLPaths, environ: Mapping[str, str] | None = None) -> TrainingEnvironment:
        env = os.environ if environ is None else environ
        raw_hps = _read_json(paths.hyperparameters, "hyperparameters.json", required=False) or {}
        if not isinstance(raw_hps, dict):
            raise UserError("hyperparameters.json must hold a JSON object of name -> value")
        decoded = {str(k): decode_value(v) for k, v in raw_hps.items()}
        user = {k: v for k, v in decoded.items() if not _is_reserved(k)}
        reserved = {k: v for k, v in decoded.items() if _is_reserved(k)}

        data_cfg = _read_json(paths.inputdataconfig, "inputdataconfig.json", required=False)
        if data_cfg is None:
            # Outside SageMaker the channels on disk are the configuration.
            data_cfg = {}
            if paths.data_dir.is_dir():
                data_cfg = {p.name: {} for p in sorted(paths.data_dir.iterdir()) if p.is_dir()}
        if not isinstance(data_cfg, dict):
            raise UserError("inputdataconfig.json must hold a JSON object of channel -> settings")

        res = _read_json(paths.resourceconfig, "resourceconfig.json", required=False) or {}
        current = str(res.get("current_host") or socket.gethostname())
        # SageMaker sorts hosts lexicographically; every host must agree on the order.
        hosts = sorted(str(h) for h in (res.get("hosts") or [current]))

        ckpt_cfg = _read_json(paths.checkpointconfig, "checkpointconfig.json", required=False) or {}
        ckpt_dir = Path(ckpt_cfg.get("LocalPath") or paths.checkpoints_dir)

        return cls(
            paths=paths,
            hyperparameters=user,
            reserved=reserved,
            input_data_config={str(k): dict(v or {}) for k, v in data_cfg.items()},
            hosts=hosts,
            current_host=current,
            instance_type=str(res.get("current_instance_type", "local")),
            network_interface=str(res.get("network_interface_name", "eth0")),
            checkpoint_dir=ckpt_dir,
            job_name=env.get("TRAINING_JOB_NAME", "local-training-job"),
            extra={"resource_config": res, "checkpoint_config": ckpt_cfg},
        )

    @property
    def channels(self) -> list[str]:
        return sorted(self.input_data_config)

    def channel_dir(self, name: str) -> Path:
        return self.paths.channel(name)

    def content_type(self, channel: str) -> str | None:
        value = self.input_data_config.get(channel, {}).get("ContentType")
        return str(value) if value else None

    @property
    def is_master(self) -> bool:
        return self.current_host == self.hosts[0]

    @property
    def tuning_objective(self) -> str | None:
        value = self.reserved.get(TUNING_OBJECTIVE)
        return str(value) if value else None

    def sm_env_vars(self) -> dict[str, str]:
        """The SM_* variables sagemaker-training exports, for user code that reads them."""
        p = self.paths
        num_cpus = available_cpus()
        env: dict[str, Any] = {
            "SM_MODEL_DIR": str(p.model_dir),
            "SM_INPUT_DIR": str(p.input_dir),
            "SM_INPUT_CONFIG_DIR": str(p.config_dir),
            "SM_OUTPUT_DIR": str(p.output_dir),
            "SM_OUTPUT_DATA_DIR": str(p.output_data_dir),
            "SM_OUTPUT_INTERMEDIATE_DIR": str(p.intermediate_dir),
            "SM_OUTPUT_FAILURE": str(p.failure),
            "SM_CHECKPOINT_DIR": str(self.checkpoint_dir),
            "SM_CHANNELS": self.channels,
            "SM_HPS": self.hyperparameters,
            "SM_HOSTS": self.hosts,
            "SM_CURRENT_HOST": self.current_host,
            "SM_CURRENT_HOST_RANK": self.hosts.index(self.current_host)
            if self.current_host in self.hosts
            else 0,
            "SM_HOST_COUNT": len(self.hosts),
            "SM_MASTER_ADDR": self.hosts[0],
            "SM_CURRENT_INSTANCE_TYPE": self.instance_type,
            "SM_NETWORK_INTERFACE_NAME": self.network_interface,
            "SM_NUM_CPUS": num_cpus,
            "SM_NUM_GPUS": 0,
            "SM_RESOURCE_CONFIG": self.extra.get("resource_config", {}),
            "SM_INPUT_DATA_CONFIG": self.input_data_config,
        }
        for name in self.channels:
            env[f"SM_CHANNEL_{name.upper()}"] = str(p.channel(name))
        for key, value in self.hyperparameters.items():
            env[f"SM_HP_{key.upper()}"] = value
        return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in env.items()}

    def export(self) -> None:
        os.environ.update(self.sm_env_vars())


def _is_reserved(key: str) -> bool:
    return key.startswith(RESERVED_PREFIX) or key in RESERVED_KEYS
