"""Faults tried on the real `serve` (gunicorn and its workers): what a log collector and other
clients see when a model fails to load, start-up fails, or a client is slow on purpose."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from container.paths import MLPaths
from tests import factories
from tests.e2e.helpers import free_port, http, start_serve, stop, wait_ready

pytestmark = pytest.mark.e2e


def _json_lines(log: Path) -> list[dict[str, object]]:
    """Every line of ``log`` as JSON; a line that is not JSON fails with the line itself."""
    records = []
    for line in log.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return records


def _broken_model(base: Path) -> MLPaths:
    """A manifest whose model file is missing: the model fails to load in every worker."""
    paths = factories.opt_ml(base)
    paths.model_dir.mkdir(parents=True)
    (paths.model_dir / "model.json").write_text('{"family": "gender", "algorithm": "xgboost", "classes": ["F", "M"]}')
    return paths


def test_every_line_serve_writes_is_json_when_the_model_fails_to_load(tmp_path: Path) -> None:
    paths = _broken_model(tmp_path / "opt_ml")
    port = free_port()
    proc = start_serve(paths.base, port, tmp_path / "serve.log", workers=2)
    try:
        deadline = time.monotonic() + 60
        status, body = 0, b""
        while time.monotonic() < deadline and not (status == 503 and b"failed" in body):
            try:
                status, _, body = http("GET", f"http://127.0.0.1:{port}/ping", timeout=2)
            except OSError:
                time.sleep(0.2)
        assert status == 503
    finally:
        assert stop(proc) == 0
    records = _json_lines(tmp_path / "serve.log")
    failures = [r for r in records if r["msg"] == "model failed to load"]
    assert len(failures) == 2 and all("Traceback" in str(r["exc"]) for r in failures)  # one per worker
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in str(r["msg"]) for r in records)


@pytest.mark.parametrize("case", ["metrics folder is a file", "port in use", "bad variable"])
def test_every_line_is_json_when_start_up_fails(case: str, tmp_path: Path) -> None:
    paths = _broken_model(tmp_path / "opt_ml")
    port = free_port()
    extra: dict[str, str] = {}
    holder = socket.socket()
    if case == "metrics folder is a file":
        (tmp_path / "afile").write_text("x")
        extra["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "afile")
    elif case == "port in use":
        holder.bind(("0.0.0.0", port))
        holder.listen()
    else:
        extra["SAGEMAKER_MODEL_SERVER_TIMEOUT"] = "soon"
    try:
        proc = start_serve(paths.base, port, tmp_path / "serve.log", extra, workers=1)
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise
    finally:
        holder.close()
    assert code != 0
    records = _json_lines(tmp_path / "serve.log")
    assert records and records[-1]["level"] == "ERROR"


def _slowloris(port: int, seconds: float, stop_at: list[float]) -> None:
    """Connect and send a request head a byte a second, never finishing it (until ``seconds``)."""
    head = b"GET /ping HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\nX-Padding: " + b"a" * 200
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for byte in head:
                if time.monotonic() > stop_at[0] or time.monotonic() > seconds:
                    return
                sock.sendall(bytes([byte]))
                time.sleep(1.0)
    except OSError:  # the server closed it: what a timeout should do
        return


def test_slow_clients_do_not_hold_the_workers_from_other_clients(gender_model: MLPaths, tmp_path: Path) -> None:
    """Slowloris without nginx in front: 8 connections per worker dribble request heads a byte a
    second (and reconnect when closed) while another client calls /ping four times a second."""
    import threading

    port = free_port()
    proc = start_serve(gender_model.base, port, tmp_path / "serve.log", workers=2)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", proc=proc)
        duration = 12.0
        end = time.monotonic() + duration
        stop_at = [end]

        def attacker() -> None:
            while time.monotonic() < end:
                _slowloris(port, end, stop_at)

        attackers = [threading.Thread(target=attacker, daemon=True) for _ in range(16)]
        for thread in attackers:
            thread.start()
        time.sleep(1.0)  # every attacker has connected and started dribbling
        latencies, failures = [], 0
        while time.monotonic() < end - 0.5:
            started = time.monotonic()
            try:
                status, _, _ = http("GET", f"http://127.0.0.1:{port}/ping", timeout=2)
                latencies.append(time.monotonic() - started)
                failures += status != 200
            except OSError:
                failures += 1
            time.sleep(0.25)
        stop_at[0] = 0.0
        for thread in attackers:
            thread.join(10)
        print(f"slowloris: {len(latencies)} /ping answered, {failures} failed, "
              f"max {max(latencies, default=0):.3f}s")
        assert failures == 0 and len(latencies) >= 30
        assert max(latencies) < 1.0
    finally:
        stop(proc)
