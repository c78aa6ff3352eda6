"""Faults tried on the real `serve` (gunicorn and its workers): what a log collector and other
clients see when a model fails to load, start-up fails, or a client is slow on purpose."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from container.paths import MLPaths
from tests import factories
from tests.conftest import speed_layer_on
from tests.e2e.helpers import BIN, free_port, http, start_serve, stop, wait_ready

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


# gunicorn's gthread worker (MLSHIP_FAST off) reads a head in its one thread, as sync workers do:
# there a fronting proxy (nginx, SageMaker's) is what stops slow clients.
@pytest.mark.skipif(not speed_layer_on(), reason="the speed layer's worker gathers heads in its loop")
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


def test_train_on_a_full_model_disk_fails_cleanly_and_leaves_no_half_model(tmp_path: Path) -> None:
    """/opt/ml/model is a 16 KiB tmpfs (in a mount namespace of its own): too small for the model."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("mounting a tmpfs in a mount namespace needs root and unshare (CI runs as root)")
    paths = factories.opt_ml(tmp_path / "opt_ml", {"num_round": 50, "max_depth": 4})
    factories.write_devices(paths, rows=800)
    paths.model_dir.mkdir(parents=True, exist_ok=True)
    listing = tmp_path / "listing.txt"
    script = (f'mount -t tmpfs -o size=16k tmpfs "{paths.model_dir}" && "{BIN / "train"}"; rc=$?; '
              f'ls -A "{paths.model_dir}" > "{listing}"; exit $rc')
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         env={**os.environ, "SM_BASE_DIR": str(paths.base)}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1, run.stderr[-3000:]
    first = paths.failure.read_text().splitlines()[0]
    assert first.startswith(f"ClientError: no space left on the device while writing {paths.model_dir}/")
    assert "larger volume (VolumeSizeInGB)" in first
    assert listing.read_text().split() == []  # no model.json, no staged files, no temporary manifest
    assert not paths.success.exists()


def _train(base: Path, log: Path, hps: dict[str, object], stop_after: float | None = None,
           stop_at_checkpoint: Path | None = None) -> int:
    """One `train` process on ``base``; SIGTERMed ``stop_after`` seconds in, or once the checkpoint
    file ``stop_at_checkpoint`` exists, when given."""
    import signal

    factories.opt_ml(base, hps)
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "train")], env={**os.environ, "SM_BASE_DIR": str(base)},
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + (stop_after if stop_after is not None else 600)
    if stop_after is not None or stop_at_checkpoint is not None:
        while proc.poll() is None and time.monotonic() < deadline:
            if stop_at_checkpoint is not None and stop_at_checkpoint.exists():
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    return proc.wait(600)


@pytest.mark.slow
def test_sigterm_at_random_points_then_restart_gives_the_uninterrupted_model(tmp_path: Path) -> None:
    """SIGTERMs at seeded random points of one job (while it starts and reads data, then at two
    random rounds of the fit), each followed by a restart on the same checkpoints, against the same
    job run without interruption."""
    import random

    total = 120
    hps = {"num_round": total, "max_depth": 4, "eta": 0.1, "checkpoint_frequency": 5, "log_every": 40}
    reference = factories.opt_ml(tmp_path / "reference", hps)
    factories.write_devices(reference, rows=20000, seed=3)
    assert _train(reference.base, tmp_path / "reference.log", hps) == 0
    expected = json.loads((reference.model_dir / "model.json").read_text())

    job = factories.opt_ml(tmp_path / "job", hps)
    factories.write_devices(job, rows=20000, seed=3)
    rng = random.Random(16)
    rounds = sorted(rng.sample(range(10, total - 10, 5), 2))
    plans: list[dict[str, object]] = [{"stop_after": rng.uniform(0.5, 3.0)}]
    plans += [{"stop_at_checkpoint": job.checkpoints_dir / f"ckpt-{r:08d}.ubj"} for r in rounds]
    stops = []
    for attempt, plan in enumerate(plans):
        assert _train(job.base, tmp_path / f"attempt{attempt}.log", hps, **plan) == 0  # type: ignore[arg-type]
        training = json.loads((job.model_dir / "model.json").read_text())["training"]
        stops.append((training["resumed_from"], training["steps_done"], training["stopped_early"]))
        for entry in job.model_dir.iterdir():  # SageMaker restarts a job with an empty model folder
            entry.unlink()
    assert _train(job.base, tmp_path / "final.log", hps) == 0
    final = json.loads((job.model_dir / "model.json").read_text())
    print(f"SIGTERM plan: {plans}; (resumed from, rounds done, stopped early) per run: {stops}")
    assert [s[2] for s in stops[1:]] == [True, True]
    assert stops[1][1] >= rounds[0] and stops[2][0] == stops[1][1] and stops[2][1] >= rounds[1]
    assert final["training"]["resumed_from"] == stops[2][1]
    assert final["training"]["steps_done"] == total and not final["training"]["stopped_early"]
    # Resumed boosting continues the same trees: the model is the uninterrupted one, within tolerance.
    for metric in ("roc_auc", "logloss", "accuracy"):
        assert final["metrics"][metric] == pytest.approx(expected["metrics"][metric], abs=0.005), metric
