"""The Spark UDF answers exactly as /invocations does, for both families, on a real cluster."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from container.paths import MLPaths
from container.settings import Settings
from inference.app import create_app
from inference.spark.cluster import LocalCluster, session_conf
from tests import factories

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark(spark_cluster: LocalCluster) -> Iterator[Any]:
    """A driver in this process using both workers; stopped at the module's end so that the other
    modules' drivers get the cluster's cores."""
    from pyspark.sql import SparkSession

    # The driver's PYSPARK_PYTHON is the interpreter its executors start for Python work.
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("mlship-udf-test")
    for key, value in session_conf(spark_cluster.master_url, executors=2).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()
    monkeypatch.undo()


def _client(paths: MLPaths) -> FlaskClient:
    app = create_app(Settings.from_env({"SM_BASE_DIR": str(paths.base)}))
    assert app.extensions["model"].wait(60), app.extensions["model"].reason
    return app.test_client()


def _jsonl(records: list[dict[str, Any]], path: Path) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def _assert_same(spark_rows: list[dict[str, Any]], http_rows: list[dict[str, Any]], key: tuple[str, ...]
                 ) -> None:
    assert len(spark_rows) == len(http_rows)
    by_key = {tuple(r[k] for k in key): r for r in http_rows}
    assert len(by_key) == len(http_rows), "the test records need unique keys"
    for row in spark_rows:
        expected = by_key[tuple(row[k] for k in key)]
        assert set(row) == set(expected)
        for name, value in expected.items():
            if isinstance(value, float):
                assert row[name] == pytest.approx(value, abs=1e-6), name
            else:
                assert row[name] == value, name


def test_gender_answers_equal_invocations(spark: Any, gender_model: MLPaths, gender_tarball: Path,
                                          tmp_path: Path) -> None:
    from inference.spark.udf import predict

    records = json.loads(factories.devices(300, seed=21).drop(columns=["gender"]).to_json(orient="records"))
    expected = _client(gender_model).post("/invocations", json=records).get_json()["predictions"]
    df = spark.read.json(_jsonl(records, tmp_path / "devices.jsonl")).repartition(4)
    # The tarball travels to the executors with addFile, as on a cluster without shared disks.
    scored = predict(df, str(gender_tarball))
    assert scored.rdd.getNumPartitions() == 4
    rows = [r.asDict() for r in scored.collect()]
    assert {"device_id", "label", "probability"} <= set(rows[0])
    _assert_same(rows, expected, ("device_id",))


def test_propensity_pairs_equal_invocations(spark: Any, propensity_model: MLPaths, tmp_path: Path) -> None:
    from inference.spark.udf import predict

    users = [f"u{n:04d}" for n in range(0, 44, 3)] + ["stranger"]
    items = [f"m{n:04d}" for n in range(0, 27, 4)] + ["unseen-item"]
    records = [{"user": u, "item": i} for u in users for i in items]
    expected = _client(propensity_model).post("/invocations", json=records).get_json()["predictions"]
    assert any(r["cold_start"] for r in expected) and not all(r["cold_start"] for r in expected)
    df = spark.read.json(_jsonl(records, tmp_path / "pairs.jsonl")).repartition(3)
    rows = [r.asDict() for r in predict(df, str(propensity_model.model_dir)).collect()]
    _assert_same(rows, expected, ("user", "item"))


def test_a_model_path_that_is_no_model_is_refused(spark: Any, tmp_path: Path) -> None:
    from inference.spark.udf import predict

    df = spark.createDataFrame([{"user": "u1", "item": "i1"}])
    with pytest.raises(ValueError, match="not a model directory"):
        predict(df, str(tmp_path))
