"""`serve` under gunicorn and `train` as real processes: readiness, SIGTERM, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from container.paths import MLPaths
from tests import factories
from tests.e2e.helpers import BIN, free_port, http, popen_logged, start_serve, stop, wait_ready

pytestmark = pytest.mark.e2e


def test_serve_answers_ping_and_invocations_then_stops_on_sigterm(gender_model: MLPaths, tmp_path: Path) -> None:
    port = free_port()
    scratch = tmp_path / "tmp"  # TMPDIR of `serve`: where it makes its metrics folder
    scratch.mkdir()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    proc = start_serve(gender_model.base, port, tmp_path / "serve.log", {"TMPDIR": str(scratch)})
    try:
        ready_after = wait_ready(f"http://127.0.0.1:{port}/ping", proc=proc)
        assert ready_after < 30
        assert [p.name.startswith("mlship-metrics-") for p in scratch.iterdir()] == [True]
        t0 = time.monotonic()
        status, _, _ = http("GET", f"http://127.0.0.1:{port}/ping")
        assert status == 200 and time.monotonic() - t0 < 2
        records = json.loads(factories.devices(3, seed=4).drop(columns=["gender"]).to_json(orient="records"))
        status, headers, body = http("POST", f"http://127.0.0.1:{port}/invocations",
                                     json.dumps(records).encode(),
                                     {"Content-Type": "application/json", "Accept": "text/csv"})
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        assert len(body.decode().splitlines()) == 3
        status, _, body = http("POST", f"http://127.0.0.1:{port}/invocations", b"<x/>",
                               {"Content-Type": "application/xml"})
        assert status == 415 and json.loads(body)["error"]["code"] == "unsupported_media_type"
    finally:
        code = stop(proc)
    assert code == 0
    assert list(scratch.iterdir()) == []  # its metrics folder went with it
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines() if line.startswith("{")]
    assert any(line.get("logger") == "inference.access" and line.get("request_id") for line in lines)
    assert not any("Traceback" in json.dumps(line) for line in lines)


def test_serve_honours_port_and_reports_a_broken_model(tmp_path: Path) -> None:
    paths = factories.opt_ml(tmp_path / "opt_ml")
    paths.model_dir.mkdir(parents=True)
    (paths.model_dir / "model.json").write_text('{"family": "gender", "algorithm": "xgboost", "classes": ["F", "M"]}')
    port = free_port()
    proc = start_serve(paths.base, port, tmp_path / "serve.log", workers=1)
    try:
        deadline = time.monotonic() + 30
        status, body = 0, b""
        while time.monotonic() < deadline:
            try:
                status, _, body = http("GET", f"http://127.0.0.1:{port}/ping", timeout=2)
            except OSError:
                time.sleep(0.2)
                continue
            if status == 503 and b"failed" in body:
                break
            time.sleep(0.2)
        assert status == 503
        assert "model failed to load" in json.loads(body)["reason"]
    finally:
        stop(proc)


def _train_proc(base: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SM_BASE_DIR": str(base)}
    return popen_logged([str(BIN / "train")], env, log)


def test_sigterm_leaves_checkpoint_and_model_and_restart_resumes(tmp_path: Path) -> None:
    base = tmp_path / "opt_ml"
    paths = factories.opt_ml(base, {"num_round": 4000, "max_depth": 6, "eta": 0.01,
                                    "checkpoint_frequency": 50, "log_every": 50})
    factories.write_devices(paths, rows=1500)
    proc = _train_proc(base, tmp_path / "train1.log")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(paths.checkpoints_dir.glob("ckpt-*.ubj")):
        assert proc.poll() is None, (tmp_path / "train1.log").read_text()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, (tmp_path / "train1.log").read_text()
    first = json.loads((paths.model_dir / "model.json").read_text())
    assert first["training"]["stopped_early"] is True
    stopped_at = first["training"]["steps_done"]
    assert 0 < stopped_at < 4000
    assert (paths.checkpoints_dir / f"ckpt-{stopped_at:08d}.ubj").exists()

    # A restarted job (fresh model dir, same checkpoints) resumes where it stopped.
    for entry in paths.model_dir.iterdir():
        entry.unlink()
    factories.opt_ml(base, {"num_round": 4000, "max_depth": 6, "eta": 0.01,
                            "checkpoint_frequency": 50, "log_every": 50})
    proc = _train_proc(base, tmp_path / "train2.log")
    time.sleep(1.0)
    _stop_after_line(proc, tmp_path / "train2.log", "resuming from checkpoint", 60, check_alive=False)
    assert proc.wait(60) == 0
    second = json.loads((paths.model_dir / "model.json").read_text())
    assert second["training"]["resumed_from"] == stopped_at
    assert second["training"]["steps_done"] > stopped_at


def _stop_after_line(proc: subprocess.Popen[bytes], log: Path, line: str, seconds: float,
                     check_alive: bool) -> None:
    """SIGTERM ``proc`` once its log shows ``line`` (or after ``seconds``)."""
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline and line not in text:
        if check_alive:
            assert proc.poll() is None, text[-3000:]
        text = log.read_text()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)


def test_propensity_sigterm_leaves_checkpoint_and_restart_resumes(tmp_path: Path) -> None:
    from training.propensity import synth as psynth

    base = tmp_path / "opt_ml"
    hps = {"algorithm": "neumf", "epochs": 200, "batch_size": 64, "factors": 8, "patience": 0}
    paths = factories.opt_ml(base, hps)
    inter, _, _ = psynth.generate(300, 120, 15, seed=2)
    inter.to_csv(paths.channel("train") / "interactions.csv", index=False)
    proc = _train_proc(base, tmp_path / "train1.log")
    ckpt_dir = paths.checkpoints_dir / "main"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(ckpt_dir.glob("ckpt-*.npz"))) < 2:
        assert proc.poll() is None, (tmp_path / "train1.log").read_text()[-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 0, (tmp_path / "train1.log").read_text()[-3000:]
    first = json.loads((paths.model_dir / "model.json").read_text())
    assert first["training"]["stopped_early"] is True
    done = first["training"]["epochs_done"]
    assert 2 <= done < 200
    assert "[metrics] step=1 " in (tmp_path / "train1.log").read_text()

    for entry in paths.model_dir.iterdir():
        entry.unlink()
    proc = _train_proc(base, tmp_path / "train2.log")
    _stop_after_line(proc, tmp_path / "train2.log", f"after epoch {done}", 120, check_alive=True)
    assert proc.wait(120) == 0
    second = json.loads((paths.model_dir / "model.json").read_text())
    assert second["training"]["resumed_from"] == done
    assert second["training"]["epochs_done"] >= done


def test_a_too_large_body_is_a_json_413_even_for_clients_that_send_it_all_first(
        gender_model: MLPaths, tmp_path: Path) -> None:
    """urllib writes the whole body before it reads: answering before reading it broke its pipe."""
    port = free_port()
    proc = start_serve(gender_model.base, port, tmp_path / "serve.log", {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"},
                       workers=1)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", proc=proc)
        body = b"1," * (40 * 1024 * 1024 // 2)  # 40 MB against a 1 MB limit: more than socket buffers hold
        for door in ("/invocations", "/api/providers/prediction/invoke"):
            status, _, answer = http("POST", f"http://127.0.0.1:{port}{door}", body,
                                     {"Content-Type": "text/csv" if door == "/invocations" else "application/json"})
            assert status == 413 and json.loads(answer)["error"]["code"] == "payload_too_large"
        assert http("GET", f"http://127.0.0.1:{port}/ping")[0] == 200  # and the worker serves on
    finally:
        stop(proc)
