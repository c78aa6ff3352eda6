"""The spark engine: a claimed batch job runs as the job command on MLAPP_SPARK_MASTER.

The portal starts the job's driver (spark-submit in client mode, or a Spark Connect client) as a
child process of its own session, and tracks it like a local job: the driver's status file gives
the progress committed to the store (which also renews the lease), its end gives SUCCEEDED with the
row count or FAILED with its error, and a cancel (the lease lost) kills the driver, which takes its
Spark application and executors down with it. Files of a job (status, driver log) lie in
``<MLAPP_DATA_DIR>/work/spark-<prediction id>``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from inference.portal.config import PortalConfig
from inference.portal.store import Claim, Store
from inference.spark import submit

log = logging.getLogger("inference.portal")
POLL_SECONDS = 1.0
KILL_GRACE_SECONDS = 15.0


def _read_status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}  # not written yet (the driver is starting)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


class SparkEngine:
    def __init__(self, store: Store, config: PortalConfig, stop: threading.Event) -> None:
        self.store, self.config, self.stop = store, config, stop

    def run(self, claim: Claim, row: dict[str, Any], spec: dict[str, Any], model_path: Path) -> None:
        work = self.config.workdir / f"spark-{claim.prediction_id}"
        work.mkdir(parents=True, exist_ok=True)
        status_file, driver_log = work / "status.json", work / "driver.log"
        status_file.unlink(missing_ok=True)  # a retry starts afresh
        args = ["--model", str(model_path), "--input", spec["where"], "--format", spec["format"],
                "--output", row["output_location"], "--status-file", str(status_file)]
        argv = submit.command(self.config.spark_master, args, extra=self.config.spark_submit_args)
        log.info("submitting spark job to %s", self.config.spark_master)
        with driver_log.open("wb") as out:
            driver = subprocess.Popen(argv, cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        (work / "driver.pid").write_text(str(driver.pid))
        try:
            self._track(claim, driver, status_file, driver_log)
        finally:
            if driver.poll() is None:
                self._kill(driver)

    def _track(self, claim: Claim, driver: subprocess.Popen[bytes], status_file: Path,
               driver_log: Path) -> None:
        while driver.poll() is None:
            if self.stop.wait(POLL_SECONDS):
                return  # this serve process stops: the driver goes with it, the lease expires
            done = int(_read_status(status_file).get("rows_done") or 0)
            # Every beat commits the progress, which also tells whether the job was cancelled.
            if not self.store.commit_chunk(claim, [], done, self.config.lease_seconds):
                log.warning("spark job cancelled (or taken over): stopping its driver")
                return
        status = _read_status(status_file)
        if driver.returncode == 0 and status.get("state") == "SUCCEEDED":
            rows = int(status.get("rows") or 0)
            self.store.commit_chunk(claim, [], rows, self.config.lease_seconds)
            self.store.finish(claim, "succeed", rows_total=rows)
            log.info("spark job succeeded: %d rows", rows)
            return
        error = status.get("error") or (f"spark driver exited with {driver.returncode}: "
                                        f"{_log_tail(driver_log)}")
        log.warning("spark job failed: %s", error)
        self.store.finish(claim, "fail", error=str(error)[:1000])

    @staticmethod
    def _kill(driver: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the driver's process group (spark-submit, its JVM and Python): the JVM's
        shutdown hook stops the SparkContext, which kills the application's executors. The wait is
        for the whole group, not its leader: the JVM's Python child outlives spark-submit briefly,
        and a cancel that returns before it is gone leaves a driver running."""
        pgid = driver.pid
        os.killpg(pgid, signal.SIGTERM)
        if not _wait_group(driver, KILL_GRACE_SECONDS):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            _wait_group(driver, 10.0)


def group_alive(pgid: int) -> bool:
    """Whether a process group holds a live process; zombies (dead, not yet reaped by whoever
    inherited them) do not count. Linux's /proc when it is there, else kill(0)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the command (which may hold spaces and parentheses): state, ppid, pgrp.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _wait_group(driver: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        driver.poll()  # reaps the leader, our child
        if not group_alive(driver.pid):
            driver.wait(timeout=10)  # it may have died after the poll: a zombie, not counted alive
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
