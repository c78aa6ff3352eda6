"""The Jenkinsfile's plans, run for real on this machine: tests/jenkins/dsl.groovy evaluates the
Jenkinsfile for main and executes the `sh` commands of the stages from training onwards, in order, in
a workspace of this checkout, against local stand-ins: the image built from this checkout (tagged
with the build's commit, as the Build image stage would), a real distribution registry (Debian's
docker-registry on loopback) that `jenkins.image push` logs in to and pushes to, and per deploy
target (tests/jenkins/stand_ins.py):
- vms: a tests.lab.Lab per stage and family (real sshd, real nginx, the image run by podman on each
  "VM"), the shared PostgreSQL for the portal, the inventories and ssh config the pipeline is given;
- sagemaker: moto's server (S3, models, endpoint configs, endpoints), with UpdateEndpoint added and
  InvokeEndpoint answered by the test, since moto has neither a container nor an update.

Per target, three builds share the target's state as consecutive builds of main would: the first
trains, gates and deploys both families to staging and production; the second trains a deliberately
weak gender model and stops at the gate against the champion the first one left in production;
the third (a new commit, the first build's models) fails a smoke test in staging and rolls back.
Only the first deploy build to run trains both families with the image, and only the first
gate-stopping build trains the weak model (and propensity beside it: the Train stage trains every
family); the other builds start from those models (their Train stages are recorded, not executed),
which saves four identical trainings.

Not executed here (recorded only): Checkout (the stand-in is given what its `python -m
jenkins.families` prints: the families the stages loop over), Lint, Unit and service tests, Build image
and Container tests, because `./run test` runs those very commands itself (and running the suite from
inside the suite would recurse). The hosts share this machine's podman, so the pushed image is already
in their store and `podman pull` is not exercised by the VM deploy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelformat.manifest import model_version
from tests.conftest import pg_schema
from tests.e2e.helpers import free_port
from tests.jenkins import stand_ins
from tests.jenkins.stand_ins import FAMILIES, STAGES, Moto, RefusingFront, VmSites

pytestmark = [pytest.mark.container, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DSL = ROOT / "tests" / "jenkins" / "dsl.groovy"
COMMIT = "c0ffee0123456789abcdef0123456789abcdef01"
TAG = COMMIT[:12]
GATED = "9a7e0000000000000000000000000000000000aa"  # the build the gate stops
LATER = "b0b0b0123456789abcdef0123456789abcdef020"  # the build whose smoke test fails
EXECUTED = ["Train", "Champion", "Gate", "Push",
            "Deploy to staging", "Smoke test staging", "Approve production", "Deploy to production",
            "Smoke test production", "post"]
NOT_TRAINED = [s for s in EXECUTED if not s.startswith("Train")]
FAST_PROPENSITY = ("propensity.algorithm=gmf propensity.epochs=3 propensity.factors=8 propensity.batch_size=256 "
                   "propensity.patience=0")
# a deliberately weak gender model (one stump), and propensity as fast as in FAST
WEAK = f"gender.num_round=1 gender.max_depth=1 {FAST_PROPENSITY}"
PROPENSITY_FLOORS = "propensity.ndcg@10=0.0 propensity.hr@10=0.0"
FAST = {"TRAIN_ROWS": "3000", "HYPERPARAMETERS": f"gender.num_round=30 gender.max_depth=4 {FAST_PROPENSITY}",
        "GATE_FLOORS": f"gender.roc_auc=0.55 {PROPENSITY_FLOORS}"}
FAMILIES_CMD = '"$PY" -m jenkins.families'  # run by the Checkout stage, which is not executed here


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=900)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The image of this checkout, tagged as the pipeline's Build image stage tags it."""
    if shutil.which("podman") is None or _podman("info", check=False).returncode != 0:
        pytest.fail("podman is not installed or cannot run here; `./run setup` installs it")
    source = os.environ.get("MLSHIP_IMAGE")
    if not source:
        from jenkins.image import build

        source = str(build("mlship:wt-pipeline")["image"])
    tags = [f"mlship:{commit[:12]}" for commit in (COMMIT, GATED, LATER)]
    for tag in tags:
        _podman("tag", source, tag)
    yield f"mlship:{TAG}"
    for tag in tags:
        _podman("untag", source, tag, check=False)


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
        names = _podman("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
        pushed = [n for n in names if n.startswith(f"127.0.0.1:{port}/")]  # what push tagged locally
        for name in pushed:  # by name: `podman untag IMAGE` alone would drop every name of the image
            _podman("untag", name, name, check=False)
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


def run_pipeline(tmp_path: Path, params: dict[str, Any], credentials: dict[str, Any] | None = None, *,
                 commit: str = COMMIT, env: dict[str, str] | None = None, execute: list[str] = EXECUTED,
                 trained: Path | None = None) -> tuple[dict[str, Any], Path]:
    """One build of main; ``trained``: a workspace whose Train outputs this one starts with (its
    Train stages are then recorded, not executed)."""
    ws = _workspace(tmp_path)
    if trained is not None:
        stand_ins.copy_training(trained, ws)
    listed = subprocess.run([sys.executable, "-m", "jenkins.families"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    build = {"branch": "main", "commit": commit, "workspace": str(ws), "params": params, "run": True,
             "execute": execute, "log": str(tmp_path / "build.log"), "stdout": {FAMILIES_CMD: listed},
             "env": {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PYTHONPATH": str(ws),
                     "JAVA_HOME": "/usr/lib/jvm/java-17-openjdk-amd64",
                     "MLSHIP_CACHE": os.environ.get("MLSHIP_CACHE", str(Path.home() / ".cache" / "mlship")),
                     **(env or {})},
             "credentials": {"mlship-registry": {"REGISTRY_USER": "ci", "REGISTRY_PASSWORD": "s3cret-pw"},
                             **(credentials or {})}}
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


# --- the deploy plans: main + vms, main + sagemaker ------------------------------------------------
ROLE = "arn:aws:iam::123456789012:role/mlship"


@dataclass
class Target:
    """A deploy target's stand-ins, as the pipeline is pointed at them (parameters, credentials and
    the agent's environment), and what its clients are served."""

    name: str
    params: dict[str, Any]
    credentials: dict[str, Any]
    env: dict[str, str]
    store: Path
    serving: Callable[[str, str], str]  # (stage, family) -> the release tag its clients get
    broken: Callable[[str, str, str], contextlib.AbstractContextManager[Any]]
    sites: VmSites | None = None
    moto: Moto | None = None

    def ledger(self, stage: str, family: str) -> dict[str, Any]:
        return dict(json.loads((self.store / stage / family / "current.json").read_text()))


@pytest.fixture(scope="module")
def vms(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("wt-vms")
    with stand_ins.vm_sites(root, "mlship-pipe") as sites, pg_schema() as database:

        @contextlib.contextmanager
        def broken(stage: str, family: str, image_ref: str) -> Iterator[RefusingFront]:
            """The site's client URL goes through a front that refuses predictions, for this build."""
            inventory = sites.site(stage, family)
            with RefusingFront(inventory["site"]["url"]) as front:
                sites.write_site(stage, family, {**inventory, "site": {**inventory["site"], "url": front.url}})
                try:
                    yield front
                finally:
                    sites.write_site(stage, family, inventory)

        key = next(iter(sites.labs.values())).dir / "id_ed25519"
        yield Target(
            "vms", {"DEPLOY_TARGET": "vms", "VM_INVENTORY_DIR": str(sites.inventory),
                    "RELEASE_STORE": str(root / "releases")},
            {"mlship-vm-ssh": {"VM_SSH_KEY": str(key)}, "mlship-vm-ssh-config": {"VM_SSH_CONFIG": str(sites.ssh_config)},
             "mlship-portal-db": {"MLAPP_DATABASE_URL": database}},
            {"VM_DEPLOY_ARGS": "--workers 1 --watch-seconds 1"}, root / "releases",
            lambda stage, family: str(sites.served(stage, family)["release"]), broken, sites=sites)


@pytest.fixture(scope="module")
def sagemaker(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    import boto3

    root = tmp_path_factory.mktemp("wt-sagemaker")
    with stand_ins.moto_sagemaker() as moto:
        boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="models")

        @contextlib.contextmanager
        def broken(stage: str, family: str, image_ref: str) -> Iterator[None]:
            """The endpoint's container fails every invocation while it runs ``image_ref``."""
            moto.broken.add((f"mlship-{stage}-{family}", image_ref))
            try:
                yield
            finally:
                moto.broken.clear()

        yield Target(
            "sagemaker", {"DEPLOY_TARGET": "sagemaker", "AWS_REGION": "us-east-1", "SM_BUCKET": "models",
                          "SM_ROLE_ARN": ROLE, "RELEASE_STORE": str(root / "releases")},
            {"mlship-aws": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}},
            # the SDK checks the execution role with IAM, which moto's server does not hold
            {"AWS_ENDPOINT_URL": moto.url, "SAGEMAKER_VALIDATE_ROLE": "false"}, root / "releases",
            lambda stage, family: moto.image_of(f"mlship-{stage}-{family}").rpartition(":")[2], broken,
            moto=moto)


@pytest.fixture(scope="module", params=[pytest.param("vms", marks=pytest.mark.postgres), "sagemaker"])
def target(request: pytest.FixtureRequest) -> Target:
    target: Target = request.getfixturevalue(request.param)
    return target


@dataclass
class Build:
    plan: dict[str, Any]
    ws: Path
    log: str
    trained: bool = True  # its Train stages ran (False: it started from an earlier build's models)
    status: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = _status(self.plan)


def _build(target: Target, tmp: Path, registry: str, commit: str = COMMIT, **kw: Any) -> Build:
    params = {**target.params, "REGISTRY": registry, "REGISTRY_TLS_VERIFY": False, **FAST, **kw.pop("params", {})}
    plan, ws = run_pipeline(tmp, params, target.credentials, commit=commit, env=target.env, **kw)
    return Build(plan, ws, (tmp / "build.log").read_text())


@pytest.fixture(scope="module")
def training() -> dict[str, Path]:
    """Workspaces whose models later builds start from: "ws", the first deploy build's (both
    families), "weak", the first gate-stopping build's (the weak gender model). Training them again
    would repeat the same commands on the same data with the same image."""
    return {}


@pytest.fixture(scope="module")
def released(target: Target, registry: str, training: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The first build of main on this target: nothing serves yet."""
    trained = training.get("ws")
    build = _build(target, tmp_path_factory.mktemp(f"wt-{target.name}-first"), registry,
                   execute=NOT_TRAINED if trained else EXECUTED, trained=trained)
    build.trained = trained is None
    training.setdefault("ws", build.ws)
    return build


def _model_dir(ws: Path, family: str) -> Path:
    return ws / "build" / "train" / family / "opt_ml" / "model"


def test_one_build_trains_gates_and_deploys_both_families_to_staging_and_production(
        target: Target, released: Build, registry: str) -> None:
    build = released
    assert build.plan["result"] == "SUCCESS", f"{build.plan['error']}\n{build.log[-6000:]}"
    for stage in EXECUTED[:-1]:
        assert build.status[stage] == "success", (stage, build.status)
    train = [step for s in build.plan["stages"] if s["name"] == "Train" for step in s["steps"]]
    assert [step["env"]["FAMILY"] for step in train] == list(FAMILIES)
    # the first target's build trains with the image; the second starts from those models
    assert [step.get("exit") for step in train] == ([0, 0] if build.trained else [None, None])
    smoke = [step for s in build.plan["stages"] if s["name"].startswith("Smoke test") for step in s["steps"]]
    assert [step.get("exit") for step in smoke] == [0, 0, 0, 0]  # both families, both stages
    for family in FAMILIES:
        report = json.loads((build.ws / f"build/gate/{family}.json").read_text())
        assert report["passed"] is True and report["champion"]["found"] is False  # a first release
        assert report["notes"][0].startswith("no champion: the champion command failed" if target.name == "vms"
                                             else "no champion: the endpoint does not exist yet")
        version = model_version(_model_dir(build.ws, family))
        for stage in STAGES:
            assert target.serving(stage, family) == TAG, (stage, family)
            if target.sites is not None:  # the model this build trained, through the load balancer
                assert target.sites.served(stage, family)["version"] == version
            assert target.ledger(stage, family) == {"image": f"{registry}/mlship:{TAG}", "version": version,
                                                    "model_tar": str(target.store / stage / family / f"{TAG}.tar.gz"),
                                                    "build": "jenkins-mlship-main-1"}
    if target.moto is not None:  # each endpoint was invoked, one request per kind of warm-up record
        invoked = {(e, n) for e, _, n in target.moto.invocations}
        for stage in STAGES:
            assert {(f"mlship-{stage}-gender", 2), (f"mlship-{stage}-propensity", 1)} <= invoked
    assert "s3cret-pw" not in build.log
    assert "--database-url ****" in build.log if target.name == "vms" else "AWS_SECRET" not in build.log


def _weak_training(trained: Path | None) -> dict[str, Any]:
    """How a build gets its weak gender model: it trains it (the Train stage trains every family,
    propensity too, though the gate stops at gender first), or starts from the models an earlier
    build trained with the same hyperparameters on the same data."""
    if trained is None:
        return {"execute": EXECUTED}
    return {"execute": NOT_TRAINED, "trained": trained}


def _gated(plan: dict[str, Any]) -> list[tuple[str, Any]]:
    """(family, exit) of each gate the Gate stage ran: it stops at the first that fails."""
    return [(step["env"]["FAMILY"], step.get("exit")) for s in plan["stages"] if s["name"] == "Gate"
            for step in s["steps"]]


def test_a_better_champion_stops_the_build_at_the_gate_before_push(
        target: Target, released: Build, registry: str, training: dict[str, Path], tmp_path: Path) -> None:
    champion = json.loads((_model_dir(released.ws, "gender") / "model.json").read_text())["metrics"]["roc_auc"]
    # the same data and a deliberately weak model; the floor alone would let it pass
    weak = training.get("weak")
    gated = _build(target, tmp_path, f"{registry}/{target.name}-gated", GATED,
                   params={"HYPERPARAMETERS": WEAK, "GATE_FLOORS": f"gender.roc_auc=0.0 {PROPENSITY_FLOORS}"},
                   **_weak_training(weak))
    training.setdefault("weak", gated.ws)
    assert gated.plan["result"] == "FAILURE" and gated.status["Champion"] == "success", gated.log[-4000:]
    assert gated.status["Gate"] == "failure" and _gated(gated.plan) == [("gender", 1)]  # propensity: not gated
    for stage in ("Push", "Deploy to staging", "Deploy to production"):
        assert gated.status[stage] == "skipped (earlier failure)", stage
    report = json.loads((gated.ws / "build/gate/gender.json").read_text())
    new = report["metrics"]["roc_auc"]
    assert report["champion"]["found"] is True and report["champion"]["metrics"]["roc_auc"] == champion
    reason = f"roc_auc = {new:.4f} is worse than the champion's {champion:.4f} by more than 0.01"
    assert report["reasons"] == [reason]
    assert f"gate gender: FAIL {reason}" in gated.log
    assert _tags(f"{registry}/{target.name}-gated") == []  # nothing pushed
    for stage in STAGES:
        for family in FAMILIES:
            assert target.serving(stage, family) == TAG


def test_a_failing_smoke_test_rolls_back_and_the_previous_release_keeps_serving(
        target: Target, released: Build, registry: str, tmp_path: Path) -> None:
    new, old = f"{registry}/mlship:{LATER[:12]}", f"{registry}/mlship:{TAG}"
    # a later commit (the first build's models, so its Train stages are recorded, not run)
    with target.broken("staging", "propensity", new) as front:
        later = _build(target, tmp_path, registry, LATER, execute=NOT_TRAINED, trained=released.ws)
    assert later.plan["result"] == "FAILURE", later.log[-4000:]
    assert later.status["Gate"] == "success" and later.status["Push"] == "success"
    assert LATER[:12] in _tags(registry)
    if target.name == "vms":
        # every container passed the deploy's own checks; the pipeline's smoke test sees the 503
        assert later.status["Deploy to staging"] == "success" and later.status["Smoke test staging"] == "failure"
        assert front.refused >= 1 and f"{front.url}: POST /invocations answered 503" in later.log
    else:
        # the deploy's own smoke test fails and the deploy puts the endpoint's previous config back
        assert later.status["Deploy to staging"] == "failure"
        assert "failed its smoke test (InvokeEndpoint failed" in later.log and "rolled back, mlship-staging-propensity-" in later.log
    assert later.status["Deploy to production"] == "skipped (earlier failure)"
    rollback = later.plan["post"]["failure"]
    assert rollback["ran"] is True and "error" not in rollback, later.log[-4000:]
    assert [step.get("exit") for step in rollback["steps"]] == [0, 0]
    assert later.log.count(f"rolled back to {old}") == 2  # both families of staging
    for stage in STAGES:
        for family in FAMILIES:
            assert target.serving(stage, family) == TAG, (stage, family)
            assert target.ledger(stage, family)["image"] == old, (stage, family)
    # gender's smoke test passed in staging before propensity's failed: the ledger had named the new
    # release, and names the old one again after the rollback
    gender = target.ledger("staging", "gender")
    assert gender["rolled_back_from"] == new and gender["rolled_back_by"] == "jenkins-mlship-main-1"
    if target.moto is not None:
        assert any(e == "mlship-staging-propensity" and i == new for e, i, _ in target.moto.invocations)
        assert target.moto.image_of("mlship-staging-propensity") == old


# --- main + none ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_run(image: str, registry: str, training: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[dict[str, Any], Path, Path]:
    """main with DEPLOY_TARGET none; it trains unless a deploy plan's build already trained (then it
    starts from those models: the Train stages' commands are the same)."""
    tmp = tmp_path_factory.mktemp("wt-pipeline-none")
    trained = training.get("ws")
    plan, ws = run_pipeline(tmp, {"DEPLOY_TARGET": "none", "REGISTRY": registry, "REGISTRY_TLS_VERIFY": False, **FAST},
                            execute=NOT_TRAINED if trained else EXECUTED, trained=trained)
    return plan, ws, tmp


def test_main_without_a_deploy_target_gates_and_pushes_both_families(
        good_run: tuple[dict[str, Any], Path, Path], registry: str) -> None:
    plan, ws, tmp = good_run
    log = (tmp / "build.log").read_text()
    assert plan["result"] == "SUCCESS", f"{plan['error']}\n{log[-4000:]}"
    status = _status(plan)
    for stage in ("Train", "Gate", "Push"):
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
        good_run: tuple[dict[str, Any], Path, Path], registry: str, training: dict[str, Path],
        tmp_path: Path) -> None:
    _, ws, _ = good_run
    auc = json.loads((ws / "build/train/gender/opt_ml/model/model.json").read_text())["metrics"]["roc_auc"]
    before = _tags(registry)
    # the same data, a deliberately weak model (one stump), against a floor just under the good model
    worse, wws = run_pipeline(tmp_path, {"DEPLOY_TARGET": "none", "REGISTRY": f"{registry}/worse",
                                         "REGISTRY_TLS_VERIFY": False, **FAST,
                                         "HYPERPARAMETERS": WEAK,
                                         "GATE_FLOORS": f"gender.roc_auc={auc - 0.01:.4f} {PROPENSITY_FLOORS}"},
                              **_weak_training(training.get("weak")))
    status = _status(worse)
    assert worse["result"] == "FAILURE" and status["Gate"] == "failure" and _gated(worse) == [("gender", 1)]
    assert status["Push"] == "skipped (earlier failure)"
    report = json.loads((wws / "build/gate/gender.json").read_text())
    assert report["passed"] is False and report["reasons"][0].startswith("roc_auc = ")
    assert f"misses the floor {auc - 0.01:.4f}" in report["reasons"][0]
    assert "gate gender: FAIL roc_auc" in (tmp_path / "build.log").read_text()
    assert _tags(registry) == before and not _tags(f"{registry}/worse")
