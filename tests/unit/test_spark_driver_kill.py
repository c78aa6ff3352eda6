"""Stopping a spark driver waits for its whole process group, not for the group's leader alone."""

from __future__ import annotations

import subprocess
import time

from inference.portal.spark_engine import SparkEngine, group_alive


def _group_with_a_straggler(seconds: float) -> subprocess.Popen[bytes]:
    # The leader dies on SIGTERM at once; its background child ignores SIGTERM for `seconds`,
    # as the JVM's Python child outlives spark-submit for a moment.
    script = f'(trap "" TERM; sleep {seconds}) & exec sleep 60'
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    time.sleep(0.3)  # both are running
    return proc


def test_kill_returns_only_once_the_straggler_is_gone() -> None:
    proc = _group_with_a_straggler(1.5)
    assert group_alive(proc.pid)
    started = time.monotonic()
    SparkEngine._kill(proc)
    assert proc.returncode is not None
    assert not group_alive(proc.pid)
    assert time.monotonic() - started >= 1.0  # it waited for the child, after the leader was gone


def test_group_alive_is_false_for_a_group_that_never_existed() -> None:
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    assert not group_alive(proc.pid)
