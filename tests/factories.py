"""Small, seeded data sets and /opt/ml trees the tests build for themselves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from container.paths import MLPaths
from training.gender import synth


def opt_ml(base: Path, hyperparameters: dict[str, Any] | None = None,
           channels: dict[str, dict[str, Any]] | None = None) -> MLPaths:
    """An /opt/ml tree as SageMaker lays it out, hyperparameters stored as strings."""
    paths = MLPaths(base)
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    hps = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (hyperparameters or {}).items()}
    paths.hyperparameters.write_text(json.dumps(hps))
    cfg = channels if channels is not None else {"train": {"ContentType": "text/csv"}}
    paths.inputdataconfig.write_text(json.dumps(cfg))
    paths.resourceconfig.write_text(json.dumps(
        {"current_host": "algo-1-x1y2z", "hosts": ["algo-1-x1y2z"], "network_interface_name": "eth0"}))
    for name in cfg:
        paths.channel(name).mkdir(parents=True, exist_ok=True)
    return paths


def devices(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    return synth.generate(rows, seed=seed, n_apps=60)


def write_devices(paths: MLPaths, channel: str = "train", rows: int = 400, seed: int = 0,
                  fmt: str = "csv", name: str | None = None) -> Path:
    target = paths.channel(channel) / (name or f"devices.{fmt}")
    synth.write(devices(rows, seed), target, fmt)
    return target


def write_numeric(paths: MLPaths, channel: str = "train", rows: int = 300, features: int = 8,
                  seed: int = 0, header: bool = False) -> Path:
    target = paths.channel(channel) / "numeric.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    synth.numeric(rows, features, seed).to_csv(target, index=False, header=header)
    return target


FAST_XGB = {"num_round": 12, "max_depth": 3, "log_every": 4, "checkpoint_frequency": 4}
