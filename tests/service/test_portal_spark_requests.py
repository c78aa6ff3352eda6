"""The portal's `engine` field without a cluster: what `create` refuses, and why (no Spark needed)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest

from container.paths import MLPaths
from container.settings import Settings, SettingsError
from inference.portal import requests
from inference.spark import scoring
from inference.spark.job import error_message, input_format
from tests.service.test_portal import make_app, records


def _create(tmp_path: Path, gender_model: MLPaths, model_repository: Path, body: dict[str, Any],
            **env: str) -> tuple[int, dict[str, Any]]:
    app = make_app(gender_model, model_repository, f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, **env)
    resp = app.test_client().post("/api/providers/prediction/create",
                                  json={"model": "gender", **body})
    return resp.status_code, resp.get_json()


@pytest.fixture
def source(tmp_path: Path) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text('{"phone_brand": "vivo"}\n')
    return str(path)


def test_engine_local_is_the_default_and_unknown_engines_are_400(tmp_path: Path, gender_model: MLPaths,
                                                                 model_repository: Path) -> None:
    status, body = _create(tmp_path, gender_model, model_repository, {"input": records(3)})
    assert status == 202 and body["engine"] == "local"
    status, body = _create(tmp_path, gender_model, model_repository, {"input": records(3), "engine": "flink"})
    assert status == 400 and body["error"]["message"] == "engine must be local or spark"


def test_spark_engine_without_a_master_is_403_not_available(tmp_path: Path, gender_model: MLPaths, model_repository: Path,
                                              source: str) -> None:
    status, body = _create(tmp_path, gender_model, model_repository,
                           {"input": {"location": source}, "output_location": str(tmp_path / "o"),
                            "engine": "spark"})
    assert status == 403 and body["error"]["code"] == "not_available"
    assert "MLAPP_SPARK_MASTER" in body["error"]["message"]


def test_spark_engine_without_pyspark_is_403_not_available(tmp_path: Path, gender_model: MLPaths, model_repository: Path,
                                             source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The image has no pyspark; this environment has it, so its absence is what is replaced here.
    monkeypatch.setattr(requests, "pyspark_installed", lambda: False)
    status, body = _create(tmp_path, gender_model, model_repository,
                           {"input": {"location": source}, "output_location": str(tmp_path / "o"),
                            "engine": "spark"}, MLAPP_SPARK_MASTER="spark://127.0.0.1:7077")
    assert status == 403 and body["error"]["code"] == "not_available"
    assert body["error"]["message"].startswith("pyspark is not installed")


@pytest.mark.parametrize(("body", "message"), [
    ({"input": "INLINE", "output_location": "OUT"}, "engine 'spark' reads its input from a location, not inline records"),
    ({"input": "FILE"}, "engine 'spark' writes Parquet: 'output_location' is required"),
])
def test_spark_engine_needs_a_location_in_and_out(tmp_path: Path, gender_model: MLPaths, model_repository: Path,
                                                  source: str, body: dict[str, Any], message: str) -> None:
    given = {"engine": "spark", **body}
    given["input"] = records(2) if body["input"] == "INLINE" else {"location": source}
    if "output_location" in given:
        given["output_location"] = str(tmp_path / "o")
    status, answer = _create(tmp_path, gender_model, model_repository, given,
                             MLAPP_SPARK_MASTER="spark://127.0.0.1:7077")
    assert status == 400 and answer["error"]["message"] == message


def test_spark_master_setting_is_checked_at_start() -> None:
    assert Settings.from_env({"MLAPP_SPARK_MASTER": "sc://h:15002"}).spark_master == "sc://h:15002"
    with pytest.raises(SettingsError, match="MLAPP_SPARK_MASTER"):
        Settings.from_env({"MLAPP_SPARK_MASTER": "http://h"})


def test_a_model_tarball_unpacks_to_its_model_directory(gender_model: MLPaths, tmp_path: Path) -> None:
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(gender_model.model_dir, arcname="model")  # in a sub-folder, as some tools pack it
    found = scoring.model_dir(tarball)
    assert (found / "model.json").read_bytes() == (gender_model.model_dir / "model.json").read_bytes()
    with pytest.raises(ValueError, match="neither a model directory nor a model.tar.gz"):
        scoring.model_dir(tmp_path / "nothing")


def test_job_errors_are_one_line_naming_the_file() -> None:
    java = ("An error occurred while calling o33.parquet.\n: org.apache.spark.SparkException: Job aborted due "
            "to stage failure: Task 0 in stage 1.0 failed 4 times, most recent failure: "
            "org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] Encountered error while reading "
            "file file:///x/broken.parquet. SQLSTATE: KD001\n\tat org.apache.spark...")
    assert error_message(Exception(java)) == ("[FAILED_READ_FILE.NO_HINT] Encountered error while reading "
                                              "file file:///x/broken.parquet.")
    python = "Traceback (most recent call last):\n  File x\ninference.errors.BadInput: Records need device fields"
    assert error_message(Exception(python)) == "BadInput: Records need device fields"
    assert input_format("s3a://b/devices.jsonl.gz") == "jsonl"
