"""The VM rollout with real parts: three "VMs" (containers of the built image, reached through a real
sshd on loopback), a real nginx in front that the deploy configures and reloads, the shared
PostgreSQL, and >= 50 requests/s through nginx for the whole rollout.

1. A new release (new label, new model version) reaches every host with 0 failed requests, and a
   portal batch job running across the rollout finishes with every row exactly once.
2. A release that fails on the last host (its model's warm-up fails, so /ping never turns 200)
   rolls back the two hosts already moved: every host serves the previous release, 0 failures.
3. kill -9 of a serving container under load: 0 failed calls, portal calls included, and each
   answered portal call recorded once.
4. A broken repository model on one host: its smoke test fails before it takes traffic, every host
   goes back, 0 failed requests.
5. The same model.tar.gz deployed twice under load: /opt/ml/model is never empty in any running
   container, and the folder still mounted is not pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from container.paths import MLPaths
from deploy.errors import DeployError
from deploy.vms import checks
from deploy.vms.checks import Watch
from deploy.vms.containers import Release
from deploy.vms.rollout import Options
from deploy.vms.site import deploy_vms
from inference.portal.records import input_hash
from tests import factories
from tests.container.podman import image_under_test, podman_works
from tests.lab import Lab, Load, summary

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.postgres]
PREFIX = os.environ.get("MLSHIP_LAB_PREFIX", "mlship-lab")  # containers and temp dirs are named so
OPTIONS = Options(ready_seconds=60, watch=Watch(seconds=2, max_error_rate=0.0, interval=0.25))



@pytest.fixture(scope="module")
def image() -> str:
    if not podman_works():
        pytest.skip("podman is not installed or cannot run here; the VM tests need it")
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed (`./run setup` installs it)")
    return image_under_test()


def _copy(src: Path, dst: Path) -> Path:
    """Models go where the containers' uid 1000 can read them (pytest's folders are 0700)."""
    shutil.copytree(src, dst)
    for root, dirs, files in os.walk(dst):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return dst


@pytest.fixture
def lab(image: str, gender_model: MLPaths, model_repository: Path) -> Iterator[Lab]:
    with Lab(3, prefix=PREFIX) as lab:
        models = lab.dir / "models"
        _copy(gender_model.model_dir, models / "v1")
        _copy(model_repository / "gender" / "v2", models / "v2")
        _copy(model_repository, models / "repository")
        data = lab.dir / "data"
        data.mkdir(mode=0o777)
        data.chmod(0o777)
        yield lab


def _release(image: str, lab: Lab, label: str, model_dir: str, pg_url: str, **env: str) -> Release:
    data = lab.dir / "data"
    return Release(label=label, image=image, model_dir=model_dir,
                   model_repository=str(lab.dir / "models" / "repository"),
                   environment={"MLAPP_DATABASE_URL": pg_url, "MLAPP_DATA_DIR": str(data / "mlapp"),
                                "MLAPP_ALLOWED_ROOTS": str(data), "MLAPP_LEASE_SECONDS": "3",
                                "MLAPP_JOB_CHUNK_ROWS": "100", "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
                                # ~90 s for the job below, however fast the machine: it must outlast
                                # the rollout to show its lease handed over between hosts
                                "MLAPP_JOB_MAX_ROWS_PER_SECOND": "100", **env},
                   volumes=(f"{data}:{data}",), pull=False)


def _deploy(lab: Lab, release: Release, options: Options = OPTIONS) -> dict[str, Any]:
    return deploy_vms(release=release, hosts=lab.hosts, transport=lab.transport(), nginx=lab.nginx(),
                      options=options)


def _load(lab: Lab) -> Load:
    """~60 requests/s: /invocations and every 8th a portal invoke, both resent by nginx to the next
    host if one fails (the portal's by its request id, answered from the record on a resend)."""
    records = json.dumps(json.loads(factories.devices(2, seed=3).drop(columns=["gender"])
                                    .to_json(orient="records"))).encode()
    portal = json.dumps({"model": "gender", "version": "v1",
                         "input": json.loads(records)}).encode()

    def request(n: int) -> tuple[str, bytes]:
        return ("/api/providers/prediction/invoke", portal) if n % 8 == 7 else ("/invocations", records)

    return Load(lab.url, request, threads=8, rate=8.5)


def _served(lab: Lab) -> dict[str, dict[str, Any]]:
    """What each host's running container reports through GET /release."""
    out = {}
    for host in lab.hosts:
        ps = subprocess.run(["podman", "ps", "--format", "{{.Names}}", "--filter", f"name=^{host.prefix}-"],
                            capture_output=True, text=True, check=True).stdout.split()
        assert len(ps) == 1, (host.name, ps)  # exactly one colour left running
        port = host.ports[0] if ps[0].endswith("-blue") else host.ports[1]
        out[host.name] = checks.release(host.url(port))
    return out


def _call(method: str, url: str, body: Any = None) -> dict[str, Any]:
    status, raw = checks.http(method, url, body, timeout=30)
    assert status in (200, 202), raw
    return dict(json.loads(raw))


def test_rollout_under_load_has_no_failed_request_and_hands_the_batch_job_over(
        image: str, lab: Lab, pg_url: str) -> None:
    models = lab.dir / "models"
    first = _deploy(lab, _release(image, lab, "r1", str(models / "v1"), pg_url))
    assert [h["previous"] for h in first["hosts"]] == [None, None, None]

    rows = 9_000
    source = lab.dir / "data" / "rows.jsonl"
    frame = factories.devices(rows, seed=7).drop(columns=["gender"])
    frame.to_json(source, orient="records", lines=True)
    source.chmod(0o644)
    pid = _call("POST", f"{lab.url}/api/providers/prediction/create",
                {"model": "gender", "version": "v1", "input": {"location": str(source)}})["prediction_id"]
    check = f"{lab.url}/api/providers/prediction/check?prediction_id={pid}&limit=1"
    deadline = time.monotonic() + 30
    while _call("GET", check)["rows_done"] == 0:
        assert time.monotonic() < deadline, "the batch job never started"
        time.sleep(0.1)

    load = _load(lab).start()
    try:
        time.sleep(2)
        began = load.now()
        out = _deploy(lab, _release(image, lab, "r2", str(models / "v2"), pg_url))
        ended = load.now()
        job_during = _call("GET", check)
        time.sleep(1)
    finally:
        load.stop()
    during = summary(load.window(began, ended))
    everything = summary(load.samples)
    failed = [s for s in load.samples if s.status != 200]
    assert everything["failed"] == 0, failed[:10]
    assert during["rate"] >= 50, during
    assert during["requests"] > 50 * (ended - began) * 0.9, during

    assert [h["previous"] for h in out["hosts"]] == ["r1", "r1", "r1"]
    served = _served(lab)
    for host, release in served.items():
        assert release["release"] == "r2", (host, release)
        assert release["manifest"]["algorithm"] == "logreg", host  # v2's model, not v1's
    log = "\n".join(f"{e['t']} {e['host']} {e['step']}" for e in out["events"])
    assert log.count("drained in") == 3 and log.count("smoke test passed") == 3, log

    assert job_during["status"] in {"QUEUED", "RUNNING"}, job_during  # the rollout ran under the job
    deadline = time.monotonic() + 150
    while (job := _call("GET", check))["status"] not in {"SUCCEEDED", "FAILED"}:
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "SUCCEEDED", job
    assert job["attempts"] >= 2, job  # its host was replaced under it: another one took the lease over
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT row_index, input_sha256 FROM prediction_rows "
                                          "WHERE prediction_id = :p ORDER BY row_index"), {"p": pid}).all()
    finally:
        engine.dispose()
    assert [r[0] for r in stored] == list(range(rows))  # none lost, none twice
    assert [r[1] for r in stored] == [input_hash(r) for r in json.loads(frame.to_json(orient="records"))]


def test_a_release_failing_on_the_last_host_rolls_every_host_back_with_no_failed_request(
        image: str, lab: Lab, pg_url: str) -> None:
    models = lab.dir / "models"
    _deploy(lab, _release(image, lab, "r1", str(models / "v1"), pg_url))
    for host in lab.hosts:  # each VM has its own disk: vm3's copy of the new model is broken
        target = _copy(models / "v2", Path(host.state_dir) / "model-r2")
        if host.name == "vm3":
            (target / "warmup.json").write_text("[]")
    load = _load(lab).start()
    try:
        time.sleep(1)
        with pytest.raises(DeployError) as failure:
            _deploy(lab, _release(image, lab, "r2", "{state_dir}/model-r2", pg_url))
        time.sleep(1)
    finally:
        load.stop()
    message = str(failure.value)
    assert message.startswith("vm3: ") and "/ping" in message and "warmup.json" in message, message
    assert "rolled back 3 host(s) (vm3, vm2, vm1); every host serves r1 as before" in message, message
    everything = summary(load.samples)
    assert everything["failed"] == 0, [s for s in load.samples if s.status != 200][:10]
    assert everything["rate"] >= 50, everything
    for host, release in _served(lab).items():
        assert release["release"] == "r1", (host, release)
        assert release["manifest"]["algorithm"] == "xgboost", host


def test_kill_9_of_a_serving_container_under_load_fails_no_portal_call(image: str, lab: Lab, pg_url: str) -> None:
    """A host dies mid-call: nginx resends the portal's create and invoke too (each try carries one
    X-Request-Id), and the portal answers a resent call from its record, so no client call fails and
    none is recorded twice."""
    models = lab.dir / "models"
    _deploy(lab, _release(image, lab, "r1", str(models / "v1"), pg_url))
    records = json.loads(factories.devices(2, seed=3).drop(columns=["gender"]).to_json(orient="records"))
    invoke = json.dumps({"model": "gender", "version": "v1", "input": records}).encode()
    create = json.dumps({"model": "gender", "version": "v1", "input": records}).encode()

    def request(n: int) -> tuple[str, bytes]:
        return [("/api/providers/prediction/invoke", invoke), ("/invocations", json.dumps(records).encode()),
                ("/api/providers/prediction/invoke", invoke), ("/api/providers/prediction/create", create)][n % 4]

    load = Load(lab.url, request, threads=8, rate=8.5).start()
    try:
        time.sleep(3)
        victim = next(h for h in lab.hosts if h.name == "vm2")
        names = subprocess.run(["podman", "ps", "--format", "{{.Names}}", "--filter", f"name=^{victim.prefix}-"],
                               capture_output=True, text=True, check=True).stdout.split()
        subprocess.run(["podman", "kill", "--signal", "KILL", *names], check=True, capture_output=True)
        killed_at = load.now()
        time.sleep(6)
    finally:
        load.stop()
    failed = [s for s in load.samples if s.status not in (200, 202)]
    assert not failed, failed[:10]
    around = summary(load.window(killed_at - 1, killed_at + 3))
    assert around["requests"] > 100, around  # the kill fell among calls in flight
    answered = {path: sum(1 for s in load.samples if s.path == path) for path in (
        "/api/providers/prediction/invoke", "/api/providers/prediction/create")}
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            kept = dict(conn.execute(sa.text(
                "SELECT kind, count(*) FROM predictions WHERE idempotency_key IS NOT NULL GROUP BY kind")).all())
    finally:
        engine.dispose()
    # one recorded prediction per answered call: none lost, none made twice by a resend
    assert kept == {"online": answered["/api/providers/prediction/invoke"],
                    "batch": answered["/api/providers/prediction/create"]}, (kept, answered)


def test_a_broken_repository_model_on_one_host_keeps_the_release_out_with_no_failed_request(
        image: str, lab: Lab, pg_url: str) -> None:
    """The new release's default model is fine everywhere, but vm2's copy of its repository has a
    broken model clients name (gender/v1): vm2's smoke test reaches it through the portal and the
    target-model header before the host takes traffic, and every host goes back to r1."""
    models = lab.dir / "models"
    _deploy(lab, _release(image, lab, "r1", str(models / "v1"), pg_url))
    for host in lab.hosts:  # each VM has its own disk, and its own copy of the new repository
        _copy(models / "repository", Path(host.state_dir) / "repository-r2")
    broken = Path(next(h for h in lab.hosts if h.name == "vm2").state_dir) / "repository-r2" / "gender" / "v1"
    (broken / "xgboost-model.ubj").write_bytes(b"not a booster")
    load = _load(lab).start()
    try:
        time.sleep(1)
        with pytest.raises(DeployError) as failure:
            _deploy(lab, replace(_release(image, lab, "r2", str(models / "v2"), pg_url),
                                 model_repository="{state_dir}/repository-r2"))
        time.sleep(1)
    finally:
        load.stop()
    message = str(failure.value)
    assert message.startswith("vm2: ") and "model gender v1" in message, message
    assert "every host serves r1 as before" in message, message
    everything = summary(load.samples)
    assert everything["failed"] == 0, [s for s in load.samples if s.status != 200][:10]
    for host, release in _served(lab).items():
        assert release["release"] == "r1", (host, release)


def test_the_same_tarball_deployed_twice_under_load_never_empties_a_running_model_folder(
        image: str, lab: Lab, pg_url: str, tmp_path: Path) -> None:
    """Re-deploying a model.tar.gz already on the hosts leaves its folder as it is: the containers of
    the previous release, which mount it, never see /opt/ml/model empty (watched all along)."""
    import tarfile

    tar_path = tmp_path / "model.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for item in sorted((lab.dir / "models" / "v1").iterdir()):
            tar.add(item, arcname=item.name)
    tarball = tar_path.read_bytes()
    folder = f"{{state_dir}}/models/{hashlib.sha256(tarball).hexdigest()[:16]}"

    def deploy(label: str) -> dict[str, Any]:
        return deploy_vms(release=_release(image, lab, label, folder, pg_url), hosts=lab.hosts,
                          transport=lab.transport(), nginx=lab.nginx(), options=OPTIONS, model_tar=tarball)

    deploy("r1")
    seen: list[tuple[str, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            names = subprocess.run(["podman", "ps", "--format", "{{.Names}}", "--filter", f"name=^{PREFIX}"],
                                   capture_output=True, text=True).stdout.split()
            for name in names:
                listed = subprocess.run(["podman", "exec", name, "ls", "/opt/ml/model"], capture_output=True,
                                        text=True)
                if listed.returncode == 0:  # a container stopping meanwhile cannot be listed
                    seen.append((name, len(listed.stdout.split())))
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    load = _load(lab).start()
    watcher.start()
    try:
        time.sleep(1)
        out = deploy("r2")
        time.sleep(1)
    finally:
        stop.set()
        watcher.join(30)
        load.stop()
    assert len(seen) > 20, seen  # the watch really looked, all through the rollout
    assert all(count >= 4 for _, count in seen), [s for s in seen if s[1] < 4][:5]
    assert summary(load.samples)["failed"] == 0
    assert out["pruned"] == {h.name: [] for h in lab.hosts}  # the folder is still in use: kept
    for host, release in _served(lab).items():
        assert release["release"] == "r2", (host, release)
