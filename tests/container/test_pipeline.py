"""The Jenkinsfile's plan, run for real on this machine: tests/jenkins/dsl.groovy evaluates the
Jenkinsfile for main and executes the `sh` commands of the stages from training onwards, in order, in
a workspace of this checkout, against local stand-ins: the image built from this checkout (tagged
with the build's commit, as the Build image stage would), a real distribution registry (Debian's
docker-registry on loopback) that `jenkins.image push` logs in to and pushes to.

Not executed here (recorded only): Checkout, Lint, Unit and service tests, Build image and Container
tests, because `./run test` runs those very commands itself (and running the suite from inside the
suite would recurse). The deploy plans (vms, sagemaker) need the deploy helpers' champion commands
and a VM lab per stage and family; their test below says exactly what is missing when it cannot run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import free_port

pytestmark = [pytest.mark.container, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DSL = ROOT / "tests" / "jenkins" / "dsl.groovy"
COMMIT = "c0ffee0123456789abcdef0123456789abcdef01"
TAG = COMMIT[:12]
EXECUTED = ["Train gender", "Train propensity", "Champion", "Gate gender", "Gate propensity", "Push",
            "Deploy to staging", "Smoke test staging", "Approve production", "Deploy to production",
            "Smoke test production", "post"]
FAST = {"TRAIN_ROWS": "3000", "HP_GENDER": "num_round=30 max_depth=4",
        "HP_PROPENSITY": "algorithm=gmf epochs=3 factors=8 batch_size=256 patience=0",
        "GATE_GENDER_MIN_ROC_AUC": "0.55", "GATE_PROPENSITY_MIN_NDCG": "0.0", "GATE_PROPENSITY_MIN_HR": "0.0"}


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=900)


@pytest.fixture(scope="module")
def image() -> str:
    """The image of this checkout, tagged as the pipeline's Build image stage tags it."""
    if shutil.which("podman") is None or _podman("info", check=False).returncode != 0:
        pytest.fail("podman is not installed or cannot run here; `./run setup` installs it")
    source = os.environ.get("MLSHIP_IMAGE")
    if not source:
        from jenkins.image import build

        source = str(build("mlship:wt-pipeline")["image"])
    _podman("tag", source, f"mlship:{TAG}")
    return f"mlship:{TAG}"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's distribution registry on a loopback port, storage in a temporary folder."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists():
        pytest.fail("docker-registry is not installed; `./run setup` installs Debian's docker-registry")
    work = tmp_path_factory.mktemp("wt-registry")
    port = free_port()
    config = work / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {work}/data\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    log = (work / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/v2/", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"docker-registry did not start: {(work / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.2)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _workspace(tmp_path: Path) -> Path:
    """A Jenkins workspace of this checkout: its files (linked) and the environment's venv."""
    ws = tmp_path / "ws"
    ws.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".venv", "build", ".git"}:
            (ws / entry.name).symlink_to(entry)
    (ws / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return ws


def run_pipeline(tmp_path: Path, params: dict[str, Any], credentials: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], Path]:
    ws = _workspace(tmp_path)
    build = {"branch": "main", "commit": COMMIT, "workspace": str(ws), "params": params, "run": True,
             "execute": EXECUTED, "log": str(tmp_path / "build.log"),
             "env": {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PYTHONPATH": str(ws),
                     "JAVA_HOME": "/usr/lib/jvm/java-17-openjdk-amd64",
                     "MLSHIP_CACHE": os.environ.get("MLSHIP_CACHE", str(Path.home() / ".cache" / "mlship"))},
             "credentials": credentials if credentials is not None else
             {"mlship-registry": {"REGISTRY_USER": "ci", "REGISTRY_PASSWORD": "s3cret-pw"}}}
    (tmp_path / "build.json").write_text(json.dumps(build))
    env = {**os.environ, "JAVA_HOME": "/usr/lib/jvm/java-17-openjdk-amd64"}
    subprocess.run(["groovy", str(DSL), str(ROOT / "Jenkinsfile"), str(tmp_path / "build.json"),
                    str(tmp_path / "plan.json")], env=env, timeout=3600, check=False)
    return json.loads((tmp_path / "plan.json").read_text()), ws


def _status(plan: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in plan["stages"]}


def _tags(registry: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/mlship/tags/list", timeout=5) as r:
            return list(json.loads(r.read())["tags"] or [])
    except OSError:
        return []


@pytest.fixture(scope="module")
def good_run(image: str, registry: str, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[dict[str, Any], Path, Path]:
    tmp = tmp_path_factory.mktemp("wt-pipeline-none")
    plan, ws = run_pipeline(tmp, {"DEPLOY_TARGET": "none", "REGISTRY": registry, "REGISTRY_TLS_VERIFY": False, **FAST})
    return plan, ws, tmp


def test_main_without_a_deploy_target_trains_gates_and_pushes_both_families(
        good_run: tuple[dict[str, Any], Path, Path], registry: str) -> None:
    plan, ws, tmp = good_run
    log = (tmp / "build.log").read_text()
    assert plan["result"] == "SUCCESS", f"{plan['error']}\n{log[-4000:]}"
    status = _status(plan)
    for stage in ("Train gender", "Train propensity", "Gate gender", "Gate propensity", "Push"):
        assert status[stage] == "success", stage
    assert status["Champion"] == "skipped (when)" and status["Deploy to staging"] == "skipped (when)"
    for family, metric in (("gender", "roc_auc"), ("propensity", "ndcg@10")):
        manifest = json.loads((ws / f"build/train/{family}/opt_ml/model/model.json").read_text())
        assert manifest["family"] == family and metric in manifest["metrics"]
        assert (ws / f"build/train/{family}/model.tar.gz").stat().st_size > 0
        report = json.loads((ws / f"build/gate/{family}.json").read_text())
        assert report["passed"] is True and report["champion"]["found"] is False
        assert report["notes"][0].startswith("no champion:")  # said, not skipped silently
    assert "gate gender: no champion:" in log and "gate propensity: PASS" in log
    assert TAG in _tags(registry)  # pushed to the real registry, under the commit's tag
    assert "s3cret-pw" not in log  # the password went to podman login through stdin only
    pulled = _podman("pull", "--tls-verify=false", f"{registry}/mlship:{TAG}", check=False)
    assert pulled.returncode == 0, pulled.stderr


def test_a_worse_model_stops_the_pipeline_at_the_gate_before_push(
        good_run: tuple[dict[str, Any], Path, Path], registry: str, tmp_path: Path) -> None:
    _, ws, _ = good_run
    auc = json.loads((ws / "build/train/gender/opt_ml/model/model.json").read_text())["metrics"]["roc_auc"]
    before = _tags(registry)
    # the same data, a deliberately weak model (one stump), against a floor just under the good model
    worse, wws = run_pipeline(tmp_path, {"DEPLOY_TARGET": "none", "REGISTRY": f"{registry}/worse",
                                         "REGISTRY_TLS_VERIFY": False, **FAST,
                                         "HP_GENDER": "num_round=1 max_depth=1",
                                         "GATE_GENDER_MIN_ROC_AUC": f"{auc - 0.01:.4f}"})
    status = _status(worse)
    assert worse["result"] == "FAILURE" and status["Gate gender"] == "failure"
    assert status["Push"] == "skipped (earlier failure)"
    report = json.loads((wws / "build/gate/gender.json").read_text())
    assert report["passed"] is False and report["reasons"][0].startswith("roc_auc = ")
    assert f"misses the floor {auc - 0.01:.4f}" in report["reasons"][0]
    assert "gate gender: FAIL roc_auc" in (tmp_path / "build.log").read_text()
    assert _tags(registry) == before and not _tags(f"{registry}/worse")


def _deploy_commands() -> set[str]:
    out = subprocess.run([sys.executable, "-m", "deploy", "--help"], cwd=ROOT, capture_output=True, text=True)
    return {c for c in ("vms", "vms-champion", "sagemaker", "sagemaker-champion") if c in out.stdout}


@pytest.mark.parametrize("target", ["vms", "sagemaker"])
def test_deploy_plans_end_to_end(target: str) -> None:
    """main+vms and main+sagemaker: deploy both families to staging and production, a better champion
    on production stops the gate, a failing smoke test rolls back and the previous release serves.
    For the lead to enable after merging issue 11 and issue 12 (see README "Jenkins")."""
    needed = {"vms": {"vms", "vms-champion"}, "sagemaker": {"sagemaker", "sagemaker-champion"}}[target]
    missing = needed - _deploy_commands()
    if missing:
        pytest.skip(f"`python -m deploy` has no {', '.join(sorted(missing))} on this branch (issue 11/12)")
    pytest.skip(f"the {target} deploy plan needs its stand-ins wired here after the merge: "
                + ("a deploy.lab.Lab per stage and family and STAGE-FAMILY.json inventories with a site object"
                   if target == "vms" else "moto's server, with canned invocation results for the smoke test"))
