"""The command line that runs the job command against a master: spark-submit for spark://, yarn,
k8s://, local[...]; the job module itself (a Spark Connect client) for sc://. No pyspark import here:
the portal builds the command where pyspark may be missing and reports that instead."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

JOB_FILE = Path(__file__).with_name("job.py")


def pyspark_installed() -> bool:
    return importlib.util.find_spec("pyspark") is not None


def spark_submit() -> str:
    """bin/spark-submit of the pip-installed pyspark (its Spark distribution lies inside it)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise RuntimeError("pyspark is not installed")
    return str(Path(spec.origin).parent / "bin" / "spark-submit")


def command(master: str, job_args: list[str], conf: dict[str, str] | None = None,
            extra: str = "") -> list[str]:
    """argv for one job; ``conf``: --conf pairs, ``extra``: more spark-submit options as one
    shell-quoted string (MLAPP_SPARK_SUBMIT_ARGS)."""
    if master.startswith("sc://"):
        return [sys.executable, "-m", "inference.spark.job", "--remote", master, *job_args]
    argv = [spark_submit(), "--master", master, "--name", "mlship-predict"]
    for key, value in (conf or {}).items():
        argv += ["--conf", f"{key}={value}"]
    return [*argv, *shlex.split(extra), str(JOB_FILE), *job_args]
