"""The portal's spark engine on the real cluster: a job's states, its failure on a corrupt file, cancel."""

from __future__ import annotations

import json
import shlex
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask import Flask

from container.paths import MLPaths
from inference.portal.jobs import JobService
from inference.spark.cluster import LocalCluster
from tests import factories
from tests.service.test_portal import make_app
from tests.spark.helpers import job_conf

pytestmark = pytest.mark.spark


# One task per Parquet row group: the cancel test's job runs many small tasks, so a cancel lands
# while most of them are still to run however fast one of them is.
SMALL_SPLITS = {"spark.sql.files.maxPartitionBytes": "16k", "spark.sql.files.openCostInBytes": "0"}


def _portal(cluster: LocalCluster, model: MLPaths, repository: Path, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch, **extra: str) -> Flask:
    # The drivers the portal starts inherit its environment: loopback, this Python and checkout.
    for key in ("SPARK_HOME", "SPARK_LOCAL_IP", "SPARK_CONF_DIR", "PYSPARK_PYTHON", "PYTHONPATH"):
        monkeypatch.setenv(key, cluster.env[key])
    conf = " ".join(f"--conf {shlex.quote(f'{k}={v}')}" for k, v in {**job_conf(cluster), **extra}.items())
    return make_app(model, repository, f"sqlite:///{tmp_path / 'mlapp.db'}", tmp_path,
                    MLAPP_SPARK_MASTER=cluster.master_url, MLAPP_SPARK_SUBMIT_ARGS=conf)


@pytest.fixture
def portal(spark_cluster: LocalCluster, gender_model: MLPaths, model_repository: Path, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    yield _portal(spark_cluster, gender_model, model_repository, tmp_path, monkeypatch)


@pytest.fixture
def many_task_portal(spark_cluster: LocalCluster, gender_model: MLPaths, model_repository: Path,
                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    yield _portal(spark_cluster, gender_model, model_repository, tmp_path, monkeypatch, **SMALL_SPLITS)


def _service(app: Flask) -> JobService:
    return app.extensions["portal"]  # type: ignore[no-any-return]


def _create(app: Flask, location: Path, out: Path) -> dict[str, Any]:
    resp = app.test_client().post("/api/providers/prediction/create", json={
        "model": {"name": "gender", "version": "v1"}, "input": {"location": str(location)},
        "output_location": str(out), "engine": "spark"})
    assert resp.status_code == 202, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def _check(app: Flask, pid: str) -> dict[str, Any]:
    body: dict[str, Any] = app.test_client().post("/api/providers/prediction/check",
                                                  json={"prediction_id": pid}).get_json()
    return body


def _run_in_background(app: Flask) -> threading.Thread:
    worker = threading.Thread(target=_service(app).run_one, daemon=True)
    worker.start()
    return worker


def _devices(path: Path, rows: int, fmt: str = "parquet", row_group: int | None = None) -> Path:
    frame = factories.devices(500, seed=44).drop(columns=["gender"])
    frame = pd.concat([frame] * (rows // 500), ignore_index=True)
    frame["device_id"] = [str(n) for n in range(len(frame))]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.to_parquet(path, index=False, row_group_size=row_group)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


def test_spark_job_goes_queued_running_succeeded_with_its_row_count(portal: Flask, tmp_path: Path) -> None:
    source = _devices(tmp_path / "in" / "devices.jsonl", 1000, fmt="jsonl")
    created = _create(portal, source, tmp_path / "out")
    assert created["status"] == "QUEUED" and created["engine"] == "spark"
    worker = _run_in_background(portal)
    seen = ["QUEUED"]
    deadline = time.monotonic() + 400
    while worker.is_alive() and time.monotonic() < deadline:
        status = _check(portal, created["prediction_id"])["status"]
        if status != seen[-1]:
            seen.append(status)
        time.sleep(0.5)
    worker.join(timeout=5)
    final = _check(portal, created["prediction_id"])
    if final["status"] != seen[-1]:
        seen.append(final["status"])
    assert seen == ["QUEUED", "RUNNING", "SUCCEEDED"], final
    assert final["rows_total"] == final["rows_done"] == 1000
    assert final["results_location"] == str(tmp_path / "out")
    assert len(pd.read_parquet(tmp_path / "out")) == 1000


def test_a_corrupt_input_file_fails_the_job_naming_the_file(portal: Flask, tmp_path: Path) -> None:
    source = tmp_path / "in" / "broken.parquet"
    source.parent.mkdir()
    good = _devices(tmp_path / "good.parquet", 500).read_bytes()
    source.write_bytes(good[: len(good) // 2] + b"\x00garbage\x00" + good[-8:])  # a torn file
    created = _create(portal, source, tmp_path / "out")
    _service(portal).run_one()
    final = _check(portal, created["prediction_id"])
    assert final["status"] == "FAILED", final
    assert "broken.parquet" in final["error"]
    assert "Traceback" not in final["error"] and len(final["error"]) <= 1000


def test_cancel_stops_the_spark_job(many_task_portal: Flask, tmp_path: Path) -> None:
    portal = many_task_portal
    source = _devices(tmp_path / "in" / "devices.parquet", 60000, row_group=500)  # some 400 tasks
    created = _create(portal, source, tmp_path / "out")
    pid = created["prediction_id"]
    worker = _run_in_background(portal)
    work = tmp_path / "mlapp" / "work" / f"spark-{pid}"
    deadline = time.monotonic() + 300
    # Cancel once the application runs tasks (its progress names the partitions).
    progress: dict[str, Any] = {}
    while time.monotonic() < deadline and not progress.get("partitions_total"):
        assert worker.is_alive(), _check(portal, pid)
        time.sleep(0.3)
        progress = _status(work / "status.json")
    assert progress.get("partitions_done", 0) < progress.get("partitions_total", 0) // 2, progress
    driver = int((work / "driver.pid").read_text())
    resp = portal.test_client().post("/api/providers/prediction/cancel", json={"prediction_id": pid})
    assert resp.status_code == 200 and resp.get_json()["status"] == "CANCELLED"
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert not _live_in_group(driver)  # the driver's whole process group is gone
    assert _check(portal, pid)["status"] == "CANCELLED"
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def _live_in_group(pgid: int) -> list[str]:
    """Live (not zombie) processes of a group, read from /proc, independent of the engine's check."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _, pgrp = text[text.rindex(")") + 2:].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            live.append(text[:80])
    return live


def _status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}  # not written yet
