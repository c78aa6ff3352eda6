"""MLapp on several VMs: two `serve` processes behind a real nginx sharing one PostgreSQL store.

A job created through one instance is visible through the other and runs exactly once; a serve
killed (SIGKILL, no goodbye) in the middle of a job leaves it to the other after the lease expires,
and the finished job has every result row once. Also: /metrics sums gunicorn workers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from container.paths import MLPaths
from inference.portal.records import input_hash
from tests import factories
from tests.e2e.helpers import free_port, http, start_nginx, start_serve, stop, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]
JSON = {"Content-Type": "application/json"}


def call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    status, _, raw = http(method, url, json.dumps(body).encode() if body is not None else None, JSON,
                          timeout=30)
    return status, json.loads(raw)


def wait_status(url: str, pid: str, want: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call("GET", f"{url}/api/providers/prediction/check?prediction_id={pid}&limit=1")
        assert status == 200, body
        if body["status"] in want:
            return body
        time.sleep(0.1)
    raise TimeoutError(f"prediction {pid} still {body['status']} after {timeout}s")


class Cluster:
    def __init__(self, base: Path, repo: Path, db_url: str, tmp: Path) -> None:
        self.base, self.repo, self.db_url, self.tmp = base, repo, db_url, tmp
        self.procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}

    def start(self, name: str, workers: int = 1, **env: str) -> str:
        port = free_port()
        proc = start_serve(self.base, port, self.tmp / f"{name}.log", {
            "MLAPP_DATABASE_URL": self.db_url, "MLAPP_MODEL_REPOSITORY": str(self.repo),
            "MLAPP_DATA_DIR": str(self.tmp / name), "MLAPP_ALLOWED_ROOTS": str(self.tmp),
            "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / f"{name}-metrics"), **env}, workers=workers)
        self.procs[name] = (proc, port)
        wait_ready(f"http://127.0.0.1:{port}/ping", 90, proc)
        return f"http://127.0.0.1:{port}"

    def kill(self, name: str) -> None:
        proc, _ = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)  # master and workers, mid-write: a crashed VM
        proc.wait()

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def close(self) -> None:
        for proc, _ in self.procs.values():
            stop(proc)


@pytest.fixture
def cluster(gender_model: MLPaths, model_repository: Path, pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(gender_model.base, model_repository, pg_url, tmp_path)
    try:
        yield c
    finally:
        c.close()


def _records(n: int, seed: int) -> list[dict[str, Any]]:
    frame = factories.devices(n, seed=seed).drop(columns=["gender"])
    return list(json.loads(frame.to_json(orient="records")))


def test_two_instances_behind_nginx_share_jobs_and_each_runs_once(cluster: Cluster, tmp_path: Path) -> None:
    a = cluster.start("a", workers=2)
    b = cluster.start("b", workers=1)
    ports = [p for _, p in cluster.procs.values()]
    lb_port = free_port()
    nginx = start_nginx(tmp_path / "nginx", lb_port, ports)
    lb = f"http://127.0.0.1:{lb_port}"
    try:
        status, created = call("POST", f"{a}/api/providers/prediction/create",
                               {"model": "gender", "input": _records(300, seed=1)})
        assert status == 202 and created["status"] == "QUEUED"
        done = wait_status(b, created["prediction_id"], {"SUCCEEDED", "FAILED"})  # checked via the other
        assert done["status"] == "SUCCEEDED" and done["rows_done"] == 300 and done["attempts"] == 1
        assert done["results"]["total"] == 300

        pids = []
        for seed in range(8):  # through the balancer: nginx spreads them over both instances
            status, created = call("POST", f"{lb}/api/providers/prediction/create",
                                   {"model": "gender", "input": _records(120, seed=10 + seed)})
            assert status == 202
            pids.append(created["prediction_id"])
        for pid in pids:
            body = wait_status(lb, pid, {"SUCCEEDED", "FAILED"})
            assert body["status"] == "SUCCEEDED" and body["attempts"] == 1 and body["results"]["total"] == 120
        runs = cluster.log("a").count("running prediction job") + cluster.log("b").count("running prediction job")
        assert runs == 9  # every job started exactly once across the two VMs
        for name in ("a", "b"):  # and the balancer did send work to both
            assert "/api/providers/prediction/create" in cluster.log(name)
    finally:
        stop(nginx)


def test_metrics_sum_over_gunicorn_workers(cluster: Cluster) -> None:
    a = cluster.start("a", workers=2)
    for _ in range(20):
        assert http("POST", f"{a}/invocations", json.dumps(_records(2, seed=5)).encode(), JSON)[0] == 200
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(4):  # whichever worker answers the scrape, it reports both workers' counts
        _, _, raw = http("GET", f"{a}/metrics")
        samples = [s for fam in text_string_to_metric_families(raw.decode()) for s in fam.samples
                   if s.name == "mlship_http_requests_total" and s.labels["route"] == "/invocations"]
        assert sum(s.value for s in samples) == 20


def test_a_killed_instance_leaves_its_job_to_the_other_with_no_lost_or_duplicated_rows(
        cluster: Cluster, tmp_path: Path) -> None:
    rows = 40_000
    frame = factories.devices(rows, seed=7).drop(columns=["gender"])
    source = tmp_path / "big.jsonl"
    frame.to_json(source, orient="records", lines=True)
    fast = {"MLAPP_LEASE_SECONDS": "3", "MLAPP_JOB_CHUNK_ROWS": "500"}
    a = cluster.start("a", **fast)
    status, created = call("POST", f"{a}/api/providers/prediction/create",
                           {"model": "gender", "input": {"location": str(source)}})
    assert status == 202, created
    pid = created["prediction_id"]
    deadline = time.monotonic() + 60
    while True:  # kill it once some, but not all, chunks are committed
        _, body = call("GET", f"{a}/api/providers/prediction/check?prediction_id={pid}&limit=1")
        if 0 < body["rows_done"] < rows // 2:
            break
        assert body["status"] in {"QUEUED", "RUNNING"} and time.monotonic() < deadline, body
        time.sleep(0.02)
    cluster.kill("a")
    killed_at = body["rows_done"]

    b = cluster.start("b", **fast)
    done = wait_status(b, pid, {"SUCCEEDED", "FAILED"}, timeout=180)
    assert done["status"] == "SUCCEEDED", done
    assert done["attempts"] == 2 and done["rows_done"] == rows and done["results"]["total"] == rows
    resumed = re.search(r"attempt 2, resuming after (\d+) rows", cluster.log("b"))
    assert resumed is not None and killed_at <= int(resumed.group(1)) < rows
    assert int(resumed.group(1)) % 500 == 0  # from the last committed chunk, not from zero

    engine = sa.create_engine(cluster.db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text(
                "SELECT row_index, input_sha256 FROM prediction_rows WHERE prediction_id = :p "
                "ORDER BY row_index"), {"p": pid}).all()
    finally:
        engine.dispose()
    assert [r[0] for r in stored] == list(range(rows))  # none lost, none twice
    expected = [input_hash(r) for r in json.loads(frame.to_json(orient="records"))]
    assert [r[1] for r in stored] == expected  # and each result sits against its own input
