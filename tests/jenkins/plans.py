"""The Jenkinsfile's plan without a Jenkins controller: a real Groovy interpreter runs it against the
declarative stand-in tests/jenkins/dsl.groovy, which records (or, with "run", executes) each stage's
steps. Shared by the unit tests of the Jenkinsfile and of the family declarations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DSL = ROOT / "tests" / "jenkins" / "dsl.groovy"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CREDENTIALS = {"mlship-registry": {}, "mlship-aws": {}, "mlship-vm-ssh": {}, "mlship-vm-ssh-config": {},
               "mlship-portal-db": {}}
FAMILIES_CMD = '"$PY" -m jenkins.families'  # the Checkout stage's list of families the stages loop over


def groovy() -> list[str]:
    if shutil.which("groovy") is None:
        pytest.fail("groovy is not installed: `./run setup` installs Debian's groovy package")
    return ["groovy"]


def listed_families(env: dict[str, str] | None = None) -> str:
    """What the Checkout stage's `python -m jenkins.families` prints (in ``env``)."""
    done = subprocess.run([sys.executable, "-m", "jenkins.families"], cwd=ROOT, capture_output=True, text=True,
                          env=env, check=True)
    return done.stdout


def evaluate(tmp_path: Path, build: dict[str, Any], jenkinsfile: Path = ROOT / "Jenkinsfile",
             timeout: float = 120) -> dict[str, Any]:
    """The stand-in's plan of one build described by ``build`` (BUILD.json, see dsl.groovy)."""
    (tmp_path / "build.json").write_text(json.dumps(build))
    out = tmp_path / "plan.json"
    env = {**os.environ, "JAVA_HOME": os.environ.get("JAVA_HOME", JAVA_HOME)}
    done = subprocess.run([*groovy(), str(DSL), str(jenkinsfile), str(tmp_path / "build.json"), str(out)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    assert out.exists(), done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    result["exit"] = done.returncode
    return result


def plan(tmp_path: Path, branch: str = "main", jenkinsfile: Path = ROOT / "Jenkinsfile",
         credentials: dict[str, Any] | None = None, families_listed: str | None = None,
         **params: Any) -> dict[str, Any]:
    """The recorded plan of one build of ``jenkinsfile`` (nothing is run; the families are what
    ``python -m jenkins.families`` lists, or ``families_listed``)."""
    listed = listed_families() if families_listed is None else families_listed
    build = {"branch": branch, "commit": COMMIT, "workspace": str(tmp_path / "ws"), "params": params,
             "credentials": CREDENTIALS if credentials is None else credentials, "run": False,
             "stdout": {FAMILIES_CMD: listed}}
    return evaluate(tmp_path, build, jenkinsfile)


def by_name(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in p["stages"]}


def ran(p: dict[str, Any]) -> list[str]:
    return [s["name"] for s in p["stages"] if s["status"] == "success"]


def commands(p: dict[str, Any], stage: str) -> list[str]:
    return [step["sh"] for step in by_name(p)[stage]["steps"] if "sh" in step]


def per_family(p: dict[str, Any], stage: str) -> list[tuple[str, str]]:
    """(FAMILY, command) of each step of ``stage`` that a family loop runs."""
    return [(step["env"]["FAMILY"], step["sh"]) for step in by_name(p)[stage]["steps"]
            if "sh" in step and "FAMILY" in step.get("env", {})]
