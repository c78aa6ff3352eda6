"""Running the job command against the test cluster, as spark-submit would on a real one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from inference.spark.cluster import LocalCluster, session_conf
from inference.spark.submit import command

ROOT = Path(__file__).resolve().parents[2]


def job_conf(cluster: LocalCluster, executors: int = 2) -> dict[str, str]:
    conf = session_conf(cluster.master_url, executors)
    conf.pop("spark.master")  # spark-submit's --master
    return conf


def submit(cluster: LocalCluster, job_args: list[str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(cluster.master_url, job_args, job_conf(cluster)), env=cluster.env, cwd=cluster.base,
                          capture_output=True, text=True, timeout=timeout, check=False)


def status(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
