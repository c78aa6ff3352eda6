"""The built image under podman: `train` on a mounted /opt/ml, then `serve` called from outside,
including by boto3's sagemaker-runtime client (through nginx's /endpoints rewrite)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from container.paths import MLPaths
from inference import predictors
from inference.codecs import decode_csv
from tests import factories
from tests.container import layers
from tests.container.podman import image_under_test, podman_works
from tests.e2e.helpers import free_port, http, start_nginx, stop, wait_ready
from training.gender import synth

pytestmark = [pytest.mark.container, pytest.mark.slow]
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def image() -> str:
    if not podman_works():
        pytest.skip("podman is not installed or cannot run here; the image tests need it")
    return image_under_test()


def _writable(path: Path) -> None:
    """The image runs as uid 1000; a host directory mounted at /opt/ml must let it write."""
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o777)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666)


def _podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


def _wait_container(name: str, port: int) -> None:
    """Wait for /ping; on failure the container's own log goes into the test report."""
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", timeout=90)
    except TimeoutError as exc:
        logs = _podman("logs", "--tail", "40", name, check=False)
        raise TimeoutError(f"{exc}; container log:\n{logs.stdout}{logs.stderr}") from None


@pytest.fixture(scope="module")
def trained(image: str, tmp_path_factory: pytest.TempPathFactory) -> MLPaths:
    base = tmp_path_factory.mktemp("image") / "opt_ml"
    paths = factories.opt_ml(base, {**factories.FAST_XGB}, {"train": {"ContentType": "text/csv"}})
    factories.write_devices(paths, rows=400)
    _writable(base)
    run = _podman("run", "--rm", "-v", f"{base}:/opt/ml", image, "train", check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[metrics] step=final validation:roc_auc=" in run.stdout
    return paths


def test_image_metadata(image: str) -> None:
    info = json.loads(_podman("image", "inspect", image).stdout)[0]
    config = info["Config"]
    assert config["Cmd"] == ["train"]
    assert config.get("Entrypoint") in (None, [])
    assert config.get("User") in (None, "", "0", "root")  # started as root, as SageMaker runs it
    assert "MLSHIP_RUN_AS=mlship" in config["Env"]  # ... and `train`/`serve` drop to mlship themselves
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"


def test_image_layers_hold_no_secrets_keys_credentials_git_or_datasets(image: str, tmp_path: Path) -> None:
    """Every file of every layer, as `podman save` ships them, and every build step's command."""
    archive = tmp_path / "image.tar"
    _podman("save", "--format", "docker-archive", "-o", str(archive), image)
    datasets = layers.dataset_hashes(SHARED_DATA) if SHARED_DATA.is_dir() else {}
    count, found = layers.scan(archive, datasets)
    assert count > 10_000  # the layers were read, not an empty archive
    assert found == []
    history = _podman("image", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert layers.history_findings(history.splitlines()) == []


def test_the_build_writes_a_cyclonedx_sbom_of_what_the_image_holds(image: str, tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    from jenkins.image import ROOT, write_sbom

    text = write_sbom(image, tmp_path).read_text()
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(text) is None
    found = {(c["purl"].split("/")[0], c["name"].lower().replace("_", "-")): c["version"]
             for c in json.loads(text)["components"]}
    pins = [line.split("==") for line in (ROOT / "requirements" / "runtime.lock").read_text().splitlines()
            if "==" in line and not line.startswith("#")]
    assert len(pins) > 50
    for name, version in pins:  # every locked runtime package, at its locked version
        if name == "libclang":  # the Dockerfile deletes it (tensorflow's build tooling): not in the image
            assert ("pkg:pypi", name) not in found
            continue
        assert found.get(("pkg:pypi", name.strip().lower().replace("_", "-"))) == version.strip(), name
    assert ("pkg:deb", "python3") in found and ("pkg:deb", "libgomp1") in found


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from the host's /proc (rootful podman: no user namespace)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            todo.extend(int(c) for c in (task / "children").read_text().split())
    return out


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_serve_runs_every_process_as_the_unprivileged_user(served: tuple[str, int]) -> None:
    """Started as root (as SageMaker starts it), the gunicorn master and its workers are mlship."""
    name, _ = served
    pid = int(_podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
    tree = _process_tree(pid)
    assert len(tree) >= 3  # the master and the fixture's two workers
    for process in tree:
        status = _status(process)
        assert status["Uid"].split() == ["1000"] * 4, (process, status["Uid"])
        assert status["Gid"].split() == ["1000"] * 4, (process, status["Gid"])
        assert int(status["CapEff"], 16) == 0 and status["Groups"] == ""


def test_train_in_the_image_writes_model_and_artefacts(trained: MLPaths) -> None:
    manifest = json.loads((trained.model_dir / "model.json").read_text())
    assert manifest["algorithm"] == "xgboost" and manifest["metrics"]["roc_auc"] > 0.5
    assert (trained.output_data_dir / "roc_curve.png").exists()
    assert trained.success.exists()


def test_failed_training_in_the_image_writes_failure(image: str, tmp_path: Path) -> None:
    paths = factories.opt_ml(tmp_path / "opt_ml", {"max_depth": "very"})
    factories.write_devices(paths, rows=50)
    _writable(paths.base)
    run = _podman("run", "--rm", "-v", f"{paths.base}:/opt/ml", image, "train", check=False)
    assert run.returncode == 1
    assert paths.failure.read_text().startswith("ClientError: Hyperparameter 'max_depth' = 'very' is not a valid int")
    assert not (paths.model_dir / "model.json").exists()


# The image serves with the speed layer on (its default) and off: the same answers either way.
@pytest.fixture(scope="module", params=["true", "false"], ids=["MLSHIP_FAST=true", "MLSHIP_FAST=false"])
def served(image: str, trained: MLPaths, request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    port = free_port()
    name = f"mlship-serve-{port}"
    _podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9090", "-e", f"MLSHIP_FAST={request.param}",
            "-e", "SAGEMAKER_BIND_TO_PORT=9090", "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2",
            "-v", f"{trained.model_dir}:/opt/ml/model:ro", image, "serve")
    try:
        _wait_container(name, port)
        yield name, port
    finally:
        _podman("stop", "-t", "30", name, check=False)
        _podman("rm", "-f", name, check=False)


def test_serve_in_the_image_matches_in_process_predictions(served: tuple[str, int], trained: MLPaths) -> None:
    _, port = served
    sample = synth.to_csv_frame(factories.devices(5, seed=21).drop(columns=["gender"]))
    body = sample.to_csv(index=False).encode()
    status, _headers, out = http("POST", f"http://127.0.0.1:{port}/invocations", body,
                                {"Content-Type": "text/csv", "Accept": "application/json"})
    assert status == 200, out
    remote = [p["probability_M"] for p in json.loads(out)["predictions"]]
    local = predictors.load(trained.model_dir).predict(decode_csv(body.decode()))
    assert remote == pytest.approx(local.columns["probability_M"], abs=1e-6)
    status, _, out = http("POST", f"http://127.0.0.1:{port}/invocations", b"1,2\n", {"Content-Type": "text/csv"})
    assert status == 400 and b"Traceback" not in out


def test_boto3_sagemaker_runtime_client_through_nginx(served: tuple[str, int], tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config

    _, port = served
    lb_port = free_port()
    rewrite = "    location ~ ^/endpoints/[^/]+/invocations$ {\n      rewrite ^ /invocations break;\n      proxy_pass http://backends;\n    }\n"
    nginx = start_nginx(tmp_path / "nginx", lb_port, [port], extra_locations=rewrite)
    try:
        client = boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{lb_port}",
                              region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
                              config=Config(retries={"max_attempts": 1}))
        records = json.loads(factories.devices(2, seed=5).drop(columns=["gender"]).to_json(orient="records"))
        resp = client.invoke_endpoint(EndpointName="gender-prod", Body=json.dumps(records).encode(),
                                      ContentType="application/json", Accept="text/csv",
                                      CustomAttributes="trace=xyz")
        assert resp["ContentType"].startswith("text/csv")
        assert resp["CustomAttributes"] == "trace=xyz"
        lines = resp["Body"].read().decode().splitlines()
        assert len(lines) == 2 and all(line.split(",")[0] in {"F", "M"} for line in lines)
    finally:
        stop(nginx)


def test_container_stops_cleanly_on_sigterm(image: str, trained: MLPaths) -> None:
    port = free_port()
    name = f"mlship-stop-{port}"
    _podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
            "-v", f"{trained.model_dir}:/opt/ml/model:ro", image, "serve")
    try:
        _wait_container(name, port)
        started = time.monotonic()
        _podman("stop", "-t", "30", name)
        assert time.monotonic() - started < 25
        state = json.loads(_podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0
    finally:
        _podman("rm", "-f", name, check=False)


def test_propensity_train_and_serve_in_the_image(image: str, tmp_path: Path) -> None:
    from training.propensity import synth as psynth

    paths = factories.opt_ml(tmp_path / "opt_ml", {"algorithm": "neumf", "epochs": 2, "factors": 4,
                                                   "batch_size": 128})
    inter, _, _ = psynth.generate(50, 30, 8, seed=4)
    inter.to_csv(paths.channel("train") / "interactions.csv", index=False)
    _writable(paths.base)
    run = _podman("run", "--rm", "-v", f"{paths.base}:/opt/ml", image, "train", check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "validation:hr@10=" in run.stdout
    port = free_port()
    name = f"mlship-prop-{port}"
    _podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
            "-v", f"{paths.model_dir}:/opt/ml/model:ro", image, "serve")
    try:
        started = time.monotonic()
        _wait_container(name, port)
        assert time.monotonic() - started < 30
        status, _, out = http("POST", f"http://127.0.0.1:{port}/invocations", b'{"user": "u0001", "k": 3}',
                              {"Content-Type": "application/json"})
        assert status == 200 and len(json.loads(out)["predictions"][0]["items"]) == 3
        local = predictors.load(paths.model_dir).predict(decode_csv("user,k\nu0001,3\n"))
        assert json.loads(out)["predictions"][0]["items"] == local.columns["items"][0]
    finally:
        _podman("stop", "-t", "30", name, check=False)
        _podman("rm", "-f", name, check=False)


def _root_owned(base: Path) -> None:
    """/opt/ml as SageMaker's SDK local mode leaves it: folders owned by root, mode 0755."""
    for root, _dirs, files in os.walk(base):
        os.chown(root, 0, 0)
        os.chmod(root, 0o755)
        for name in files:
            os.chown(os.path.join(root, name), 0, 0)
            os.chmod(os.path.join(root, name), 0o644)


def _gender_job(base: Path) -> MLPaths:
    paths = factories.opt_ml(base, {**factories.FAST_XGB}, {"train": {"ContentType": "text/csv"}})
    factories.write_devices(paths, rows=200)
    for folder in (paths.model_dir, paths.output_dir, paths.checkpoints_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return paths


def test_train_started_as_root_writes_into_root_owned_folders(image: str, tmp_path: Path) -> None:
    paths = _gender_job(tmp_path / "opt_ml")
    _root_owned(paths.base)
    run = _podman("run", "--rm", "-v", f"{paths.base}:/opt/ml", image, "train", check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((paths.model_dir / "model.json").read_text())["algorithm"] == "xgboost"
    assert (paths.output_data_dir / "roc_curve.png").exists()
    assert paths.model_dir.stat().st_uid == 1000  # handed to mlship, which did the work
    assert (paths.model_dir / "model.json").stat().st_uid == 1000


def test_train_under_a_non_root_uid_runs_unchanged(image: str, tmp_path: Path) -> None:
    paths = _gender_job(tmp_path / "opt_ml")
    _writable(paths.base)
    run = _podman("run", "--rm", "--user", "1000:1000", "-v", f"{paths.base}:/opt/ml", image, "train",
                  check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (paths.model_dir / "model.json").exists()


def test_train_under_a_non_root_uid_without_write_access_says_so_at_once(image: str, tmp_path: Path) -> None:
    paths = _gender_job(tmp_path / "opt_ml")
    _root_owned(paths.base)
    started = time.monotonic()
    run = _podman("run", "--rm", "--user", "1000:1000", "-v", f"{paths.base}:/opt/ml", image, "train",
                  check=False)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "/opt/ml/model is not writable by uid 1000" in run.stderr
    assert "could not write /opt/ml/output/failure" in run.stderr  # said, not raised
    assert "Traceback" not in run.stderr.split("could not write")[-1]
    assert not (paths.model_dir / "model.json").exists()
    assert time.monotonic() - started < 60  # before reading any data or fitting anything
