"""Each family is declared once (training/<family>/family.py) and CI reads the declaration: the
per-family parameters pick their family's items, the gate takes the declared floors and
directions, the training takes the declared synthetic data and hyperparameters.

Then a throw-away family, written in this file alone into a `training/` folder of a temporary
directory on PYTHONPATH (the training package spans every such folder, as for the real families):
`python -m jenkins.families` lists it, the Jenkinsfile's plan trains, gates and deploys it beside
the real ones, and the plan's own Train and Gate commands run for it (its `train` by the checkout's
Python, through a stand-in for `podman run IMAGE train`), then its deploy command line is built.
No generic file names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jenkins import families, gate, release, train
from tests.jenkins.plans import (
    COMMIT,
    CREDENTIALS,
    FAMILIES_CMD,
    ROOT,
    evaluate,
    listed_families,
    per_family,
    plan,
)
from training import families as declared
from training import metrics, registry


# --- the real declarations, as CI reads them -----------------------------------------------------
def test_every_family_is_declared_once_and_the_generic_tables_come_from_there() -> None:
    found = declared.all_families()
    assert list(found) == sorted(found) and set(found) >= {"gender", "propensity"}
    for family in found.values():
        assert family.default_algorithm in family.algorithms
        for name in family.algorithms:
            assert registry.ALGORITHMS[name].family == family.name
        assert set(family.objectives) | set(family.counts) <= set(metrics.published())
        for metric in family.gate:  # the gate's metrics are ones the family optimises
            assert family.lower_is_better(metric) is not None, (family.name, metric)
    assert declared.default().default_algorithm == registry.DEFAULT_ALGORITHM


def test_each_family_takes_its_own_items_of_the_shared_parameters() -> None:
    known = ("gender", "propensity")
    text = "gender.num_round=50 propensity.epochs=3 seed=1 other.key=v"
    assert families.for_family(text, "gender", known) == ["num_round=50", "seed=1", "other.key=v"]
    assert families.for_family(text, "propensity", known) == ["epochs=3", "seed=1", "other.key=v"]
    assert families.data_for("gender=/d/g propensity=/d/p", "propensity", known) == "/d/p"
    assert families.data_for("gender=/d/g", "propensity", known) is None  # synthetic
    assert families.data_for("/d/plain", "gender", known) == "/d/plain"
    assert families.data_for("", "gender", known) is None
    with pytest.raises(SystemExit, match="not FAMILY=FOLDER"):
        families.data_for("toy=/d/t", "gender", known)


def test_training_takes_the_declared_hyperparameters_unless_given_its_own() -> None:
    ci = dict(declared.get("propensity").ci_hyperparameters)
    assert train.hyperparameters_for("propensity", "", []) == ci
    assert train.hyperparameters_for("propensity", "gender.num_round=5", []) == ci  # another family's item
    assert train.hyperparameters_for("propensity", "gender.num_round=5 propensity.epochs=2", ["factors=4"]) == \
        {"epochs": "2", "factors": "4"}


def test_the_gate_takes_the_declared_floors_and_directions(tmp_path: Path) -> None:
    propensity = declared.get("propensity")
    assert gate.floors_for(propensity, "", []) == dict(propensity.gate)
    assert gate.floors_for(propensity, "propensity.hr@10=0.3 gender.roc_auc=0.9", []) == \
        {**propensity.gate, "hr@10": 0.3}
    assert gate.floors_for(propensity, "propensity.hr@10=0.3", [("ndcg@10", 0.0)]) == {"ndcg@10": 0.0}
    assert gate.lower_is_better(declared.get("gender"), ["roc_auc", "logloss"]) == {"logloss"}
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"family": "propensity",
                                                  "metrics": {"ndcg@10": 0.4, "hr@10": 0.25}}))
    report = tmp_path / "gate.json"
    assert gate.main(["--family", "propensity", "--model-dir", str(model), "--report", str(report)]) == 0
    assert json.loads(report.read_text())["floors"] == dict(propensity.gate)
    assert gate.main(["--family", "propensity", "--model-dir", str(model), "--floors", "propensity.hr@10=0.3"]) == 1


# --- a throw-away family -------------------------------------------------------------------------
TOY = {
    "__init__.py": '"""A throw-away family: the majority label of two-column rows."""\n',
    "family.py": '''
        from training.families import Family

        FAMILY = Family(
            name="toy",
            algorithms={"majority": "training.toy.task:Majority"},
            default_algorithm="majority",
            objectives={"validation:accuracy": "Maximize", "validation:error": "Minimize"},
            synthetic="training.toy.synth:channels",
            gate={"accuracy": 0.5, "error": 0.5},
            ci_hyperparameters={"algorithm": "majority", "seed": "3"},
        )
        ''',
    "synth.py": '''
        import random
        from pathlib import Path


        def channels(base: Path, rows: int) -> dict[str, dict[str, str]]:
            rng = random.Random(5)
            for channel, count in (("train", rows), ("validation", max(10, rows // 4))):
                folder = base / "input/data" / channel
                folder.mkdir(parents=True)
                lines = [f"{int(rng.random() < 0.7)},{rng.random():.3f}" for _ in range(count)]
                (folder / "rows.csv").write_text("label,x\\n" + "\\n".join(lines) + "\\n")
            return {"train": {"ContentType": "text/csv"}, "validation": {"ContentType": "text/csv"}}
        ''',
    "task.py": '''
        import json

        from modelformat.manifest import ModelWriter
        from training import metrics, registry
        from training.hyperparameters import Hyperparameter as HP


        class Majority:
            family = "toy"
            hyperparameters = ()


        def declared(algorithm):
            return (registry.algorithm_hyperparameter("toy", "majority", "Which toy model."),
                    HP("seed", int, 0, "Unused."))


        def _labels(env, channel):
            lines = (env.channel_dir(channel) / "rows.csv").read_text().split()[1:]
            return [line.split(",")[0] for line in lines]


        def run(env, params, algorithm, stop):
            train = _labels(env, "train")
            label = max(set(train), key=train.count)
            seen = _labels(env, "validation")
            accuracy = sum(v == label for v in seen) / len(seen)
            scores = {"accuracy": accuracy, "error": 1 - accuracy}
            metrics.emit({f"validation:{k}": v for k, v in scores.items()})
            manifest = {"family": "toy", "algorithm": "majority", "label": label, "metrics": scores}
            with ModelWriter(env.paths.model_dir) as writer:
                (writer.staging / "warmup.json").write_text(json.dumps([{"x": 0.5}]))
                writer.commit(manifest)
            return manifest
        ''',
}
# `podman run --rm -v BASE:/opt/ml IMAGE train`, answered by this checkout's `train` on BASE
PODMAN = '''#!/bin/sh
[ "$1" = run ] && [ "$6" = train ] || { echo "stand-in podman: only 'run --rm -v BASE:/opt/ml IMAGE train'" >&2; exit 2; }
SM_BASE_DIR="${4%%:/opt/ml}" exec "$PY" -m training.cli
'''


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment in which the throw-away family is declared: its folder on PYTHONPATH."""
    root = tmp_path_factory.mktemp("toy-family")
    package = root / "training" / "toy"
    package.mkdir(parents=True)
    for name, text in TOY.items():
        (package / name).write_text(textwrap.dedent(text).lstrip())
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)])}


def test_a_new_family_is_listed_and_the_plan_trains_gates_and_deploys_it(toy: dict[str, str],
                                                                          tmp_path: Path) -> None:
    listed = listed_families(toy)
    assert listed.split() == [*families.names(), "toy"]  # found beside the real ones, in name order
    p = plan(tmp_path, families_listed=listed, DEPLOY_TARGET="vms", REGISTRY="r", APPROVE_PRODUCTION=False)
    assert p["result"] == "SUCCESS", p["error"]
    for stage in ("Train", "Champion", "Gate", "Deploy to staging", "Smoke test staging", "Deploy to production",
                  "Smoke test production"):
        assert [f for f, _ in per_family(p, stage)] == listed.split(), stage


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the Jenkinsfile's $PY
    return ws


def test_the_plans_own_commands_train_gate_and_deploy_the_new_family(toy: dict[str, str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text(PODMAN)
    (bin_dir / "podman").chmod(0o755)
    ws = _workspace(tmp_path)
    # only the new family is listed here: training the real ones takes the image
    build: dict[str, Any] = {
        "branch": "feature/toy", "commit": COMMIT, "workspace": str(ws), "credentials": CREDENTIALS,
        "params": {"TRAIN_ROWS": "200", "GATE_FLOORS": "toy.error=0.45 gender.roc_auc=0.99"},
        "run": True, "execute": ["Train", "Gate"], "log": str(tmp_path / "build.log"),
        "stdout": {FAMILIES_CMD: "toy\n"},
        "env": {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": toy["PYTHONPATH"],
                "HOME": os.environ.get("HOME", "/root")}}
    p = evaluate(tmp_path, build)
    log = (tmp_path / "build.log").read_text()
    assert p["result"] == "SUCCESS", f"{p['error']}\n{log[-3000:]}"
    model = ws / "build/train/toy/opt_ml/model"
    manifest = json.loads((model / "model.json").read_text())
    assert manifest["family"] == "toy" and (ws / "build/train/toy/model.tar.gz").stat().st_size > 0
    hps = json.loads((ws / "build/train/toy/opt_ml/input/config/hyperparameters.json").read_text())
    assert hps == {"algorithm": "majority", "seed": "3"}  # the declared CI hyperparameters
    report = json.loads((ws / "build/gate/toy.json").read_text())
    # the declared floors, toy's GATE_FLOORS item over one of them; error compared as lower-is-better
    assert report["passed"] is True and report["floors"] == {"accuracy": 0.5, "error": 0.45}
    assert "gate toy: PASS" in log

    # the deploy the plan of main runs for it, as a dry run: the target's command for its own site
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "staging-toy.json").write_text(json.dumps({
        "hosts": [{"name": "vm1", "address": "10.0.0.1", "ports": [8081, 8082]}],
        "site": {"url": "http://lb:8099", "nginx_conf": "/etc/nginx/conf.d/mlship-toy.conf"}}))
    (tmp_path / "main").mkdir()
    main = plan(tmp_path / "main", families_listed="toy\n", DEPLOY_TARGET="vms", REGISTRY="r")
    [(family, command)] = per_family(main, "Deploy to staging")
    env = {**toy, "FAMILY": family, "PY": str(ws / ".venv/bin/python"), "WORK": str(ws / "build"),
           "DEPLOY_TARGET": "vms", "IMAGE_REF": "r/mlship:abc", "VM_INVENTORY_DIR": str(inventory)}
    done = subprocess.run(["bash", "-euc", f"{command} --dry-run"], cwd=ws, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)["command"]
    assert f"-m deploy vms --image r/mlship:abc --inventory {inventory / 'staging-toy.json'}" in shown
    assert f"--model-tar {ws / 'build/train/toy/model.tar.gz'}" in shown
    assert release.endpoint({}, "staging", "toy") == "mlship-staging-toy"  # and its SageMaker endpoint
