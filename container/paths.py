"""Every /opt/ml path, built from one overridable base directory.

SageMaker fixes the layout under /opt/ml; tests, laptops and the demo point the
base elsewhere with ``SM_BASE_DIR`` (``SAGEMAKER_BASE_DIR`` is accepted as an
alias, as AWS's toolkits read it). Paths are computed when asked for, never at
import time, and nothing here creates directories: callers that write do so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE = "/opt/ml"
BASE_ENV_VARS = ("SM_BASE_DIR", "SAGEMAKER_BASE_DIR")


def base_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The /opt/ml root, honouring SM_BASE_DIR then SAGEMAKER_BASE_DIR."""
    env = os.environ if environ is None else environ
    for name in BASE_ENV_VARS:
        value = env.get(name, "").strip()
        if value:
            return Path(value)
    return Path(DEFAULT_BASE)


@dataclass(frozen=True)
class MLPaths:
    """The SageMaker filesystem contract rooted at ``base``."""

    base: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MLPaths:
        return cls(base_dir(environ))

    # --- input ---------------------------------------------------------------
    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def config_dir(self) -> Path:
        return self.input_dir / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def inputdataconfig(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resourceconfig(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def checkpointconfig(self) -> Path:
        return self.config_dir / "checkpointconfig.json"

    @property
    def data_dir(self) -> Path:
        return self.input_dir / "data"

    def channel(self, name: str) -> Path:
        return self.data_dir / name

    # --- model and output ----------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def models_dir(self) -> Path:
        """Multi-model endpoints mount models under /opt/ml/models/<name>/model."""
        return self.base / "models"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def failure(self) -> Path:
        return self.output_dir / "failure"

    @property
    def success(self) -> Path:
        return self.output_dir / "success"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def intermediate_dir(self) -> Path:
        return self.output_dir / "intermediate"

    @property
    def checkpoints_dir(self) -> Path:
        return self.base / "checkpoints"

    @property
    def code_dir(self) -> Path:
        return self.base / "code"
