"""A standalone Spark cluster on loopback (a master and N workers), from pyspark's own jars.

For the tests and the benchmark, and for trying the spark engine on one machine: every daemon
binds 127.0.0.1 on a port of its own choosing, keeps its logs, work and scratch files under
one folder, and is stopped (process group and all) when the context ends.

    with LocalCluster(Path("/tmp/spark"), workers=2) as cluster:
        cluster.master_url   # spark://127.0.0.1:PORT
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

MASTER_RE = re.compile(r"Starting Spark master at (spark://\S+)")
REGISTERED = "Successfully registered with master"
START_SECONDS = 120.0  # JVM start-up on a busy 2-core machine takes tens of seconds


def spark_home() -> Path:
    """The Spark distribution pip installed inside the pyspark package (bin/, jars/)."""
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


def daemon_env(base: Path, pythonpath: str | None = None) -> dict[str, str]:
    """Environment for daemons and drivers: loopback only, no user-wide Spark configuration, this
    Python (and its import path) for the Python workers."""
    conf = base / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_CONF_DIR": str(conf),
        "SPARK_LOG_DIR": str(base / "logs"),
        "SPARK_LOCAL_DIRS": str(base / "scratch"),
        "SPARK_DAEMON_MEMORY": "256m",
        "PYSPARK_PYTHON": sys.executable,
    })
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


class LocalCluster:
    def __init__(self, base: Path, workers: int = 2, cores: int = 1, memory: str = "1g",
                 pythonpath: str | None = None) -> None:
        self.base = base
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.env = daemon_env(base, pythonpath)
        self.master_url = ""
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def worker_pids(self) -> list[int]:
        """The worker daemons' JVMs (their children are the executors)."""
        return [proc.pid for proc in self._procs[1:]]

    def _start(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.base / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            proc = subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        return proc, log

    def _wait_for(self, proc: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str] | str
                  ) -> str:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            found = pattern.search(text) if isinstance(pattern, re.Pattern) else (
                pattern if pattern in text else None)
            if found:
                return found.group(1) if isinstance(found, re.Match) else str(found)
            if proc.poll() is not None:
                raise RuntimeError(f"{log.name}: exited with {proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.3)
        raise RuntimeError(f"{log.name}: not ready after {START_SECONDS:.0f}s:\n{log.read_text()[-3000:]}")

    def start(self) -> LocalCluster:
        master, log = self._start("master", "org.apache.spark.deploy.master.Master",
                                  "--host", "127.0.0.1", "--port", "0", "--webui-port", "0")
        self.master_url = self._wait_for(master, log, MASTER_RE)
        started = []
        for n in range(1, self.workers + 1):
            work = self.base / f"worker-{n}"
            work.mkdir(parents=True, exist_ok=True)
            started.append(self._start(
                f"worker-{n}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                "--port", "0", "--webui-port", "0", "--cores", str(self.cores), "--memory", self.memory,
                "--work-dir", str(work), self.master_url))
        for proc, wlog in started:
            self._wait_for(proc, wlog, REGISTERED)
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._procs.clear()

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def session_conf(master_url: str, executors: int, executor_memory: str = "512m") -> dict[str, str]:
    """Driver settings for a job on a LocalCluster: loopback, no UI, one core per executor."""
    return {
        "spark.master": master_url,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.executor.cores": "1",
        "spark.cores.max": str(executors),
        "spark.executor.memory": executor_memory,
        "spark.sql.shuffle.partitions": str(max(2, executors * 2)),
        "spark.pyspark.python": sys.executable,
    }
