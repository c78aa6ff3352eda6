"""The spark-submit job command on the real cluster: Parquet in, partitioned Parquet out, progress."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from container.paths import MLPaths
from inference import predictors
from inference.codecs import Inputs
from inference.spark.cluster import LocalCluster
from tests import factories
from tests.spark.helpers import status, submit

pytestmark = pytest.mark.spark


def test_job_scores_parquet_into_partitioned_parquet(spark_cluster: LocalCluster, gender_model: MLPaths,
                                                     tmp_path: Path) -> None:
    devices = factories.devices(240, seed=33).drop(columns=["gender"])
    source = tmp_path / "in" / "devices.parquet"
    source.parent.mkdir()
    devices.to_parquet(source, index=False)
    out, status_file = tmp_path / "scored", tmp_path / "status.json"
    done = submit(spark_cluster, ["--model", str(gender_model.model_dir), "--input", str(source.parent),
                                  "--format", "parquet", "--output", str(out), "--partition-by", "label",
                                  "--partitions", "3", "--status-file", str(status_file)])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    final = status(status_file)
    assert final["state"] == "SUCCEEDED" and final["rows"] == 240
    assert final["partitions_done"] == final["partitions_total"] > 0
    # spark-submit passes the Python driver's stderr on to its own stdout.
    assert "progress: rows=240 partitions=" in done.stdout + done.stderr
    assert {p.name for p in out.iterdir() if p.is_dir()} <= {"label=F", "label=M"}
    scored = pd.read_parquet(out)
    scored["label"] = scored["label"].astype(str)
    # The same answers as the model in-process (the predictor /invocations calls).
    records = json.loads(devices.to_json(orient="records"))
    expected = pd.DataFrame(predictors.load(gender_model.model_dir).predict(Inputs(raw=records)).columns)
    merged = expected.merge(scored, on="device_id", suffixes=("", "_spark"))
    assert len(merged) == 240
    assert (merged["label"] == merged["label_spark"]).all()
    assert (merged["probability"] - merged["probability_spark"]).abs().max() <= 1e-6


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "inference.spark.job", "--model", "m", "--input",
                           str(tmp_path / "x.txt"), "--output", "o"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "cannot tell the format" in done.stderr
