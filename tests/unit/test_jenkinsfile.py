"""The Jenkinsfile without a Jenkins controller: its Groovy through npm-groovy-lint, and its plan
through a real Groovy interpreter running it against the declarative stand-in tests/jenkins/dsl.groovy
(stage order, `when` decisions, credentials, the exact commands), for a feature branch and for main
with each DEPLOY_TARGET; misspelt directives and steps fail. Also the command lines jenkins.release
builds for the deploy helpers' commands."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jenkins import families, groovylint, release
from tests.jenkins.plans import COMMIT, FAMILIES_CMD, ROOT, by_name, commands, per_family, plan, ran

STAGES = ["Checkout", "Lint", "Unit and service tests", "Build image", "Container tests",
          "Push for SageMaker training", "Train", "Train on SageMaker", "Champion", "Gate", "Push",
          "Deploy to staging", "Smoke test staging", "Approve production", "Deploy to production",
          "Smoke test production"]
ALWAYS = ["Checkout", "Lint", "Unit and service tests", "Build image", "Container tests", "Gate"]
DEPLOYS = ["Deploy to staging", "Smoke test staging", "Approve production", "Deploy to production",
           "Smoke test production"]


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    cases = {"feature": ("feature/x", {"DEPLOY_TARGET": "vms"}),
             "none": ("main", {"DEPLOY_TARGET": "none", "REGISTRY": "127.0.0.1:5000"}),
             "sagemaker": ("main", {"DEPLOY_TARGET": "sagemaker", "REGISTRY": "1.dkr.ecr.eu-west-1.amazonaws.com",
                                    "REGISTRY_LOGIN": "ecr", "TRAIN_ON": "sagemaker"}),
             "vms": ("main", {"DEPLOY_TARGET": "vms", "REGISTRY": "127.0.0.1:5000", "APPROVE_PRODUCTION": False})}
    return {name: plan(tmp_path_factory.mktemp(name), branch, **params) for name, (branch, params) in cases.items()}


def test_stages_in_order_and_which_run_where(plans: dict[str, dict[str, Any]]) -> None:
    for name, p in plans.items():
        assert p["result"] == "SUCCESS" and p["exit"] == 0, (name, p["error"])
        assert [s["name"] for s in p["stages"]] == STAGES
        assert set(ALWAYS) <= set(ran(p)), name
    assert ran(plans["feature"]) == [*ALWAYS[:5], "Train", *ALWAYS[5:]]
    assert ran(plans["none"]) == [*ALWAYS[:5], "Train", *ALWAYS[5:], "Push"]
    assert ran(plans["vms"]) == [*ALWAYS[:5], "Train", "Champion", *ALWAYS[5:], "Push",
                                 *(d for d in DEPLOYS if d != "Approve production")]  # APPROVE_PRODUCTION false
    sm = ran(plans["sagemaker"])
    assert sm.index("Push for SageMaker training") < sm.index("Train on SageMaker") < sm.index("Gate")
    assert "Train" not in sm and set(DEPLOYS) <= set(sm)
    # why each deploy stage was skipped on the feature branch: the branch, not the target
    skipped = by_name(plans["feature"])["Deploy to production"]
    assert skipped["status"] == "skipped (when)" and skipped["when"]["why"].startswith("allOf(branch 'main'")


def test_options_serialise_builds_and_parameters_cover_the_targets(plans: dict[str, dict[str, Any]]) -> None:
    p = plans["none"]
    assert {"disableConcurrentBuilds": True} in p["options"]
    assert {"skipDefaultCheckout": True} in p["options"]  # the Checkout stage checks out, and tags
    defs = p["paramDefs"]
    for name in ("DEPLOY_TARGET", "TRAIN_ON", "REGISTRY", "AWS_REGION", "SM_ENDPOINT_PREFIX", "SM_BUCKET",
                 "VM_INVENTORY_DIR", "TRAIN_DATA", "HYPERPARAMETERS", "GATE_FLOORS", "GATE_MAX_DROP",
                 "APPROVE_PRODUCTION", "RELEASE_STORE"):
        assert name in defs, name
    # one parameter for every family: none is named after one
    assert not [n for n in defs for f in families.names() if f.upper() in n]
    assert defs["DEPLOY_TARGET"]["choices"] == ["none", "sagemaker", "vms"]
    assert p["env"]["IMAGE"] == f"mlship:{COMMIT[:12]}"
    assert p["env"]["IMAGE_REF"] == f"127.0.0.1:5000/mlship:{COMMIT[:12]}"
    assert plans["feature"]["env"]["CHAMPION_FROM"] == "none"  # only main reads production
    assert plans["feature"]["env"]["TRAIN_MODE"] == "local"


def test_the_exact_commands(plans: dict[str, dict[str, Any]]) -> None:
    p = plans["vms"]
    assert commands(p, "Lint") == ['"$PY" -m ruff check .', '"$PY" -m mypy', ".venv/bin/lint-imports",
                                   ".venv/bin/hadolint --failure-threshold error Dockerfile",
                                   '"$PY" -m jenkins.groovylint Jenkinsfile']
    assert commands(p, "Build image") == ['"$PY" -m jenkins.image build --tag "$IMAGE"']
    assert by_name(p)["Checkout"]["steps"][-1] == {"sh": FAMILIES_CMD, "returnStdout": True}
    assert p["env"]["FAMILIES"].split() == list(families.names())
    names = list(families.names())
    assert per_family(p, "Train") == [(f, (
        '"$PY" -m jenkins.train --family "$FAMILY" --image "$IMAGE" --workdir "$WORK/train/$FAMILY" '
        '--data "$TRAIN_DATA" --rows "$TRAIN_ROWS" --hyperparameters "$HYPERPARAMETERS"')) for f in names]
    assert per_family(p, "Gate") == [(f, (
        '"$PY" -m jenkins.gate --family "$FAMILY" --model-dir "$WORK/train/$FAMILY/opt_ml/model" '
        '--floors "$GATE_FLOORS" --champion "$WORK/champion/$FAMILY" --max-drop "$GATE_MAX_DROP" '
        '--require-champion "$GATE_REQUIRE_CHAMPION" --report "$WORK/gate/$FAMILY.json"')) for f in names]
    assert per_family(p, "Champion") == [(f, (
        '"$PY" -m jenkins.release champion --target "$DEPLOY_TARGET" --family "$FAMILY" '
        '--out "$WORK/champion/$FAMILY"')) for f in names]
    for stage in ("staging", "production"):
        assert per_family(p, f"Deploy to {stage}") == [(f, (
            f'"$PY" -m jenkins.release deploy --target "$DEPLOY_TARGET" --stage {stage} --family "$FAMILY" '
            '--image "$IMAGE_REF" --model-tar "$WORK/train/$FAMILY/model.tar.gz"')) for f in names]
        assert [f for f, _ in per_family(p, f"Smoke test {stage}")] == names
    junit = [s for s in p["post"]["always"]["steps"] if "junit" in s]
    assert junit == [{"junit": {"allowEmptyResults": True, "testResults": "build/reports/*.xml"}}]
    assert "--junitxml" in commands(p, "Unit and service tests")[0]
    archived = next(s for s in p["post"]["always"]["steps"] if "archiveArtifacts" in s)["archiveArtifacts"]
    for pattern in ("build/gate/*.json", "build/champion/**", "build/reports/**", "/opt_ml/output/**"):
        assert pattern in archived["artifacts"]


def test_credentials_bound_only_where_needed(plans: dict[str, dict[str, Any]]) -> None:
    def creds(p: dict[str, Any], stage: str) -> list[list[str]]:
        return [step.get("credentials", []) for step in by_name(p)[stage]["steps"] if "sh" in step]

    vms = plans["vms"]
    assert creds(vms, "Push") == [["usernamePassword:mlship-registry"]]
    every = len(families.names())
    assert creds(vms, "Deploy to production") == [["sshUserPrivateKey:mlship-vm-ssh", "file:mlship-vm-ssh-config",
                                                   "string:mlship-portal-db"]] * every
    sm = plans["sagemaker"]
    assert creds(sm, "Push") == [["usernamePassword:mlship-aws"]]  # ECR login from the AWS credential
    assert creds(sm, "Smoke test staging") == [["usernamePassword:mlship-aws"]] * every
    assert creds(sm, "Train on SageMaker") == [["usernamePassword:mlship-aws"]] * every
    for p in plans.values():  # no credential around builds, tests, local training or gates
        for stage in ALWAYS:
            assert all(c == [] for c in creds(p, stage)), stage
    for p in plans.values():  # and no command echoes a secret variable
        for s in p["stages"]:
            for step in s["steps"]:
                assert not any(v in step.get("sh", "") for v in ("PASSWORD", "SECRET", "DATABASE_URL")), step


def test_a_missing_credential_fails_the_stage_that_needs_it(tmp_path: Path) -> None:
    p = plan(tmp_path, DEPLOY_TARGET="vms", REGISTRY="r", credentials={"mlship-registry": {}})
    assert p["result"] == "FAILURE" and "credentials 'mlship-vm-ssh'" in p["error"]
    assert by_name(p)["Champion"]["status"] == "failure"
    assert by_name(p)["Push"]["status"] == "skipped (earlier failure)"


def test_failure_rolls_back_both_stages_on_main_only(tmp_path: Path, plans: dict[str, dict[str, Any]]) -> None:
    for p in plans.values():
        assert p["post"]["failure"]["ran"] is False
    bad = tmp_path / "Jenkinsfile"  # a deploy that errors: the post failure block runs the rollbacks
    text = (ROOT / "Jenkinsfile").read_text()
    bad.write_text(text.replace("input message:", "error 'smoke failed'\n        input message:"))
    p = plan(tmp_path, jenkinsfile=bad, DEPLOY_TARGET="vms", REGISTRY="r")
    assert p["result"] == "FAILURE" and by_name(p)["Approve production"]["status"] == "failure"
    assert by_name(p)["Deploy to production"]["status"] == "skipped (earlier failure)"
    assert [s["sh"] for s in p["post"]["failure"]["steps"] if "sh" in s] == [
        f'"$PY" -m jenkins.release rollback --target "$DEPLOY_TARGET" --stage {stage}'
        for stage in ("production", "staging")]


@pytest.mark.parametrize(("old", "new", "message"), [
    ("steps {\n        sh '\"$PY\" -m ruff", "stepz {\n        sh '\"$PY\" -m ruff", "unknown directive or step 'stepz'"),
    ("when { branch 'main' }", "when { branchh 'main' }", "unknown directive or step 'branchh'"),
    ("sh '\"$PY\" -m mypy'", "shh '\"$PY\" -m mypy'", "unknown directive or step 'shh'"),
    ("disableConcurrentBuilds()", "disableConcurrentBuild()", "unknown option 'disableConcurrentBuild'"),
    ("post {\n    always {", "post {\n    allways {", "unknown post condition 'allways'"),
    ("params.APPROVE_PRODUCTION }", "params.APPROVE_PRODUCTON }", "no parameter named 'APPROVE_PRODUCTON'"),
    ("withCredentials([usernamePassword(credentialsId: params.REGISTRY_CREDENTIALS",
     "withCredentialz([usernamePassword(credentialsId: params.REGISTRY_CREDENTIALS", "'withCredentialz'"),
])
def test_a_misspelt_directive_or_step_fails(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = (ROOT / "Jenkinsfile").read_text()
    assert text.count(old) >= 1, old
    mutated = tmp_path / "Jenkinsfile"
    mutated.write_text(text.replace(old, new, 1))
    p = plan(tmp_path, jenkinsfile=mutated, DEPLOY_TARGET="vms", REGISTRY="r")
    assert p["result"] in {"INVALID", "FAILURE"} and message in (p["error"] or ""), p["error"]
    assert p["exit"] != 0 or p["result"] == "FAILURE"


def test_every_command_a_stage_runs_takes_the_flags_it_is_given(plans: dict[str, dict[str, Any]]) -> None:
    seen = set()
    for p in plans.values():
        for s in p["stages"]:
            for cmd in (step["sh"] for step in s["steps"] if "sh" in step):
                words = shlex.split(cmd.replace('"$PY"', "python"))
                if "-m" not in words or (key := " ".join(words[:words.index("-m") + 3])) in seen:
                    continue
                seen.add(key)
                module = words[words.index("-m") + 1]
                rest = words[words.index("-m") + 2:]
                if module in {"ruff", "mypy"}:
                    continue
                if module == "pytest":
                    assert all((ROOT / w).exists() for w in rest if w.startswith("tests/")), cmd
                    continue
                sub = [rest[0]] if rest and not rest[0].startswith("-") and module != "jenkins.groovylint" else []
                out = subprocess.run([sys.executable, "-m", module, *sub, "--help"], cwd=ROOT,
                                     capture_output=True, text=True)
                assert out.returncode == 0, (cmd, out.stderr)
                for flag in (w.split("=")[0] for w in rest if w.startswith("--")):
                    assert flag in out.stdout, f"{s['name']}: {module} {' '.join(sub)} has no {flag}"
    assert {"python -m jenkins.release deploy", "python -m jenkins.train --family"} <= seen


# --- npm-groovy-lint -----------------------------------------------------------------------------
@pytest.mark.slow
def test_npm_groovy_lint_passes_the_jenkinsfile_and_fails_a_broken_one(tmp_path: Path) -> None:
    # npm must be reachable (CI machines reach the npm registry); no skip when it is not.
    binary = groovylint.install()
    done = groovylint.lint(ROOT / "Jenkinsfile", binary)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    broken = tmp_path / "Jenkinsfile"
    broken.write_text((ROOT / "Jenkinsfile").read_text().replace("stages {", "stages {{", 1))
    assert groovylint.lint(broken, binary).returncode != 0


# --- the deploy helpers' command lines ---------------------------------------------------------
def _inventory(tmp_path: Path) -> dict[str, str]:
    for stage in release.STAGES:
        for family in families.names():
            (tmp_path / f"{stage}-{family}.json").write_text(json.dumps({
                "hosts": [{"name": "vm1", "address": "10.0.0.1", "ports": [8081, 8082]}],
                "site": {"url": f"http://lb-{stage}:{8080 if family == 'gender' else 8090}", "lb_host": f"lb-{stage}",
                         "nginx_conf": f"/etc/nginx/conf.d/mlship-{family}.conf",
                         "listen": "8080" if family == "gender" else "8090"}}))
    return {"VM_INVENTORY_DIR": str(tmp_path), "VM_SSH_CONFIG": "/tmp/ssh_config",
            "MLAPP_DATABASE_URL": "postgresql://u:pw@db/mlapp", "SM_BUCKET": "models", "SM_ROLE_ARN": "arn:role",
            "AWS_REGION": "eu-west-1"}


def test_release_builds_the_deploy_helpers_command_lines(tmp_path: Path) -> None:
    env = _inventory(tmp_path)
    vms = release.deploy_argv("vms", "staging", "propensity", "reg/mlship:abc", Path("m.tar.gz"), env)
    assert vms[1:] == ["-m", "deploy", "vms", "--image", "reg/mlship:abc", "--inventory",
                       str(tmp_path / "staging-propensity.json"), "--model-tar", "m.tar.gz",
                       "--nginx-host", "lb-staging", "--nginx-conf", "/etc/nginx/conf.d/mlship-propensity.conf",
                       "--listen", "8090", "--ssh-config", "/tmp/ssh_config",
                       "--database-url", "postgresql://u:pw@db/mlapp"]
    assert "pw@" not in release.shown(vms) and "--database-url ****" in release.shown(vms)
    sm = release.deploy_argv("sagemaker", "production", "gender", "ecr/mlship:abc", Path("m.tar.gz"), env)
    assert sm[3:] == ["sagemaker", "--image-uri", "ecr/mlship:abc", "--model-tar", "m.tar.gz", "--bucket", "models",
                      "--endpoint", "mlship-production-gender", "--role", "arn:role", "--instance-type",
                      "ml.m5.large", "--region", "eu-west-1"]
    assert release.champion_argv("vms", "gender", Path("out"), env)[3:] == [
        "vms-champion", "--urls", "http://lb-production:8080", "--out", "out"]
    assert release.champion_argv("sagemaker", "gender", Path("out"), env)[3:] == [
        "sagemaker-champion", "--endpoint", "mlship-production-gender", "--out", "out", "--region", "eu-west-1"]
    with pytest.raises(release.ReleaseError, match=r"\$SM_BUCKET is empty"):
        release.deploy_argv("sagemaker", "staging", "gender", "i", Path("m"), {})


@pytest.mark.parametrize("sub", ["vms", "vms-champion", "sagemaker", "sagemaker-champion", "sagemaker-train"])
def test_the_deploy_helpers_take_those_flags(tmp_path: Path, sub: str) -> None:
    env = _inventory(tmp_path)
    argv = {"vms": release.deploy_argv("vms", "staging", "gender", "i:t", Path("m"), env),
            "vms-champion": release.champion_argv("vms", "gender", Path("o"), env),
            "sagemaker": release.deploy_argv("sagemaker", "staging", "gender", "i:t", Path("m"), env),
            "sagemaker-champion": release.champion_argv("sagemaker", "gender", Path("o"), env),
            "sagemaker-train": [sys.executable, "-m", "deploy", "sagemaker-train", "--image", "i", "--data", "d",
                                "--role", "r", "--output", "s3://b/p", "--job-name", "j", "--instance-type", "t",
                                "--hp=a=b"]}[sub]
    out = subprocess.run([sys.executable, "-m", "deploy", sub, "--help"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"`python -m deploy {sub}` does not exist on this branch yet (issue 11/12 add it): "
                    f"{out.stderr.strip().splitlines()[-1]}")
    for flag in (w.split("=")[0] for w in argv[4:] if w.startswith("--")):
        assert flag in out.stdout, f"deploy {sub} has no {flag}"


def test_champion_without_one_leaves_the_reason_for_the_gate(tmp_path: Path) -> None:
    env = {**_inventory(tmp_path), "PATH": os.environ["PATH"]}
    inv = json.loads((tmp_path / "production-gender.json").read_text())
    inv["site"]["url"] = "http://127.0.0.1:9"  # nothing listens: no host answers GET /release
    (tmp_path / "production-gender.json").write_text(json.dumps(inv))
    out = tmp_path / "champion"
    note = release.champion("vms", "gender", out, env)
    assert note["found"] is False and "exit 1" in note["reason"]
    assert json.loads((out / "champion.json").read_text())["reason"] == note["reason"]
