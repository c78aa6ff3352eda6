"""The image under a client nobody here wrote: the sagemaker SDK's own local mode.

ModelTrainer in local-container mode runs the image's `train` through a Docker API (podman's
service, started here on a private socket) and docker compose, as SageMaker would (root-owned
/opt/ml folders the SDK makes itself, no `train` argument); the SDK's local session then hosts the
resulting model.tar.gz and InvokeEndpoint answers JSON and CSV. Nothing on the client side chmods
or sets a umask."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.container.podman import image_under_test
from tests.e2e.helpers import free_port
from training.gender import synth

pytestmark = [
    pytest.mark.container, pytest.mark.slow,
    # The SDK's local mode leaves the compose process's stdout pipe for the garbage collector
    # (sagemaker/train/local/local_container.py: Popen(stdout=PIPE) read by _stream_output, never closed).
    pytest.mark.filterwarnings("ignore:Exception ignored in. <_io.FileIO:pytest.PytestUnraisableExceptionWarning"),
]


def _missing() -> str | None:
    for tool, why in (("podman", "runs the image"), ("docker-compose", "local mode drives compose"),
                      ("docker", "local mode shells out to `docker images`/`docker context`")):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH ({why}); `./run setup` installs podman and docker-compose"
    try:
        import sagemaker.train  # noqa: F401
    except ImportError:
        return "the sagemaker SDK is not installed (requirements/dev.lock pins it)"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    return image_under_test()


@pytest.fixture(scope="module")
def docker_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman's Docker-compatible API on a socket of our own, stopped at the end."""
    folder = Path(tempfile_dir(tmp_path_factory))
    sock = folder / "podman.sock"
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    host = f"unix://{sock}"
    env = {**os.environ, "DOCKER_HOST": host}
    for _ in range(100):
        if sock.exists() and subprocess.run(["docker", "version"], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    else:
        proc.terminate()
        pytest.fail("podman system service did not answer on its socket within 10 s")
    networks = _networks()
    mp = pytest.MonkeyPatch()
    mp.setenv("DOCKER_HOST", host)
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local",
                       "AWS_SECRET_ACCESS_KEY": "local"}.items():
        mp.setenv(key, value)
    try:
        yield host
    finally:
        mp.undo()
        for name in _networks() - networks:  # the SDK's compose network, if this test made it
            subprocess.run(["podman", "network", "rm", name], capture_output=True)
        proc.terminate()
        proc.wait(timeout=30)


def tempfile_dir(factory: pytest.TempPathFactory) -> Path:
    # compose names the project after the folder: wt11- marks what this test started
    import tempfile

    return Path(tempfile.mkdtemp(prefix="wt11-", dir=factory.getbasetemp()))


def _networks() -> set[str]:
    out = subprocess.run(["podman", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True)
    return set(out.stdout.split())


def _remove_containers(prefix: str) -> None:
    out = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    for name in out.stdout.split():
        if name.startswith(prefix):
            subprocess.run(["podman", "rm", "-f", name], capture_output=True)


def _local_mode_containers() -> set[str]:
    """Containers on the SDK's compose network; hosting names them after a random temp folder."""
    out = subprocess.run(["podman", "ps", "-a", "--filter", "network=sagemaker-local", "--format", "{{.ID}}"],
                         capture_output=True, text=True)
    return set(out.stdout.split())


@pytest.fixture(scope="module")
def trained(image: str, docker_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from deploy.sagemaker.training import train

    data = tmp_path_factory.mktemp("data")
    frame = synth.generate(600, seed=3)
    synth.write(frame.iloc[:480], data / "train" / "devices.csv", "csv")
    synth.write(frame.iloc[480:], data / "validation" / "devices.jsonl", "jsonl")
    root = tempfile_dir(tmp_path_factory)
    try:
        out = train(image=image, data=str(data), role="arn:aws:iam::000000000000:role/local",
                    hyperparameters={"num_round": "12", "max_depth": "3"}, local_root=root,
                    job_name="wt11-local")
        yield Path(out["model_tar"])
    finally:
        _remove_containers(root.name.lower())  # compose names the project after the folder


def test_model_trainer_local_container_trains_with_the_image(trained: Path) -> None:
    assert trained.stat().st_size > 0
    with tarfile.open(trained) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("model.json"))  # type: ignore[arg-type]
    assert {"model.json", "warmup.json"} <= names
    assert manifest["metrics"]["roc_auc"] > 0.5


@pytest.fixture(scope="module")
def local_endpoint(trained: Path, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from sagemaker.core.local.local_session import LocalSession

    session = LocalSession()
    port = free_port()
    root = tempfile_dir(tmp_path_factory)
    session.config = {"local": {"serving_port": port, "container_root": str(root), "local_code": True}}
    sm = session.sagemaker_client
    sm.create_model(ModelName="wt11-gender", PrimaryContainer={
        "Image": image, "ModelDataUrl": f"file://{trained}", "Environment": {"MLSHIP_RELEASE": "wt11-local"}})
    sm.create_endpoint_config(EndpointConfigName="wt11-gender", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "wt11-gender", "InitialInstanceCount": 1,
        "InstanceType": "local"}])
    before = _local_mode_containers()
    started = time.monotonic()
    sm.create_endpoint(EndpointName="wt11-gender", EndpointConfigName="wt11-gender")
    session.ready_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    try:
        yield session
    finally:
        sm.delete_endpoint(EndpointName="wt11-gender")
        for container in _local_mode_containers() - before:  # the hosting container this test started
            subprocess.run(["podman", "rm", "-f", container], capture_output=True)


def _records(n: int) -> list[dict[str, Any]]:
    frame = synth.generate(n, seed=11).drop(columns=["gender"], errors="ignore")
    return json.loads(frame.to_json(orient="records"))


def test_local_session_hosts_the_model_and_invokes_it_with_json_and_csv(local_endpoint: Any) -> None:
    assert local_endpoint.sagemaker_client.describe_endpoint(EndpointName="wt11-gender")["EndpointStatus"] == "InService"
    runtime = local_endpoint.sagemaker_runtime_client
    records = _records(5)
    out = runtime.invoke_endpoint(EndpointName="wt11-gender", ContentType="application/json",
                                  Accept="application/json", Body=json.dumps({"instances": records}))
    predictions = json.loads(out["Body"].read())["predictions"]
    assert len(predictions) == 5 and all(p["label"] in ("M", "F") for p in predictions)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]))
    writer.writeheader()
    for r in records:
        writer.writerow({k: "|".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
    out = runtime.invoke_endpoint(EndpointName="wt11-gender", ContentType="text/csv", Accept="text/csv",
                                  Body=buf.getvalue())
    rows = [r for r in out["Body"].read().decode().splitlines() if r]
    assert len(rows) == 5 and all(r.split(",")[0] in ("M", "F") for r in rows)


def test_the_deploy_smoke_test_passes_against_the_local_endpoint(local_endpoint: Any, trained: Path) -> None:
    """The deploy's own smoke check (warm-up examples from model.tar.gz) through the SDK's runtime."""
    from deploy.sagemaker.rollout import smoke
    from deploy.tarball import warmup_examples

    assert smoke(local_endpoint.sagemaker_runtime_client, "wt11-gender", warmup_examples(trained)) is None
