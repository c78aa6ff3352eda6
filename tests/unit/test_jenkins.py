"""The Jenkins pipeline without Jenkins: the Jenkinsfile's plan, the gate, and both deploy targets
(SageMaker against moto's server; the VM target is tested in test_deploy_vms.py)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import sagemaker
from deploy.__main__ import main as deploy_main
from jenkins import gate

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_DIRECTIVES = {"agent", "options", "parameters", "environment", "stages", "post"}
STAGE_DIRECTIVES = {"steps", "when", "post", "environment", "agent", "options"}


def _block(text: str, start: int) -> tuple[str, int]:
    """The text inside the braces opening at or after ``start``, and the index after them."""
    open_at = text.index("{", start)
    depth, i, quote = 0, open_at, ""
    while True:
        c = text[i]
        if quote:
            if c == quote and text[i - 1] != "\\":
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:i], i + 1
        i += 1


def _directives(body: str) -> list[str]:
    names, i = [], 0
    while True:
        m = re.compile(r"\s*(//[^\n]*\n)*\s*([A-Za-z]+)\s*(\([^)]*\))?\s*\{").match(body, i)
        if not m:
            return names
        names.append(m.group(2))
        _, i = _block(body, m.start(2))


def plan() -> dict[str, dict[str, object]]:
    text = (ROOT / "Jenkinsfile").read_text()
    text = re.sub(r"^\s*//.*$", "", text, flags=re.M)
    pipeline, _ = _block(text, text.index("pipeline"))
    unknown = set(_directives(pipeline)) - PIPELINE_DIRECTIVES
    assert not unknown, f"unknown pipeline directives {unknown}"
    stages_body, _ = _block(pipeline, pipeline.index("stages"))
    stages: dict[str, dict[str, object]] = {}
    for m in re.finditer(r"stage\('([^']+)'\)", stages_body):
        body, _ = _block(stages_body, m.end())
        bad = set(_directives(body)) - STAGE_DIRECTIVES
        assert not bad, f"stage {m.group(1)}: unknown directives {bad}"
        when = _block(body, body.index("when"))[0] if "when" in _directives(body) else ""
        stages[m.group(1)] = {"sh": re.findall(r"\bsh '([^']*)'", body), "when": when}
    return stages


def test_pipeline_stages_run_in_order_and_only_main_publishes() -> None:
    stages = plan()
    assert list(stages) == ["Setup", "Test", "Build image", "Test image", "Train", "Quality gate", "Push",
                            "Deploy to SageMaker", "Deploy to VMs"]
    for name in ("Push", "Deploy to SageMaker", "Deploy to VMs"):
        assert "branch 'main'" in str(stages[name]["when"])
    for name in ("Setup", "Test", "Build image", "Train", "Quality gate"):
        assert stages[name]["when"] == ""  # every branch is built, tested, trained and gated
    assert "DEPLOY_TARGET == 'sagemaker'" in str(stages["Deploy to SageMaker"]["when"])


def test_every_stage_command_exists_and_takes_the_flags_it_is_given() -> None:
    for name, stage in plan().items():
        for command in stage["sh"]:  # type: ignore[attr-defined]
            words = shlex.split(re.sub(r"\$\{[^}]*\}", "", command))
            if words[0] == "./run":
                assert words[1] in {"setup", "test", "demo", "bench"}, (name, command)
                continue
            if "-m" not in words:
                continue
            module = words[words.index("-m") + 1]
            if module == "pytest":
                assert all((ROOT / w).exists() for w in words if w.startswith("tests/"))
                continue
            args = words[words.index("-m") + 2:]
            help_argv = [args[0], "--help"] if args and not args[0].startswith("-") else ["--help"]
            out = subprocess.run([sys.executable, "-m", module, *help_argv], cwd=ROOT, capture_output=True,
                                 text=True)
            assert out.returncode == 0, (name, module, out.stderr)
            for flag in (w.split("=")[0] for w in args if w.startswith("--")):
                assert flag in out.stdout, f"stage {name}: {module} has no {flag}"


# --- the gate ---------------------------------------------------------------------------------
def test_gate_checks_floors_and_the_champion() -> None:
    good = {"roc_auc": 0.71, "logloss": 0.55}
    assert gate.evaluate(good, {"roc_auc": 0.6}) == []
    assert gate.evaluate(good, {"roc_auc": 0.75}) == ["roc_auc = 0.7100 misses the floor 0.7500"]
    assert gate.evaluate(good, {"logloss": 0.5}) == ["logloss = 0.5500 misses the floor 0.5000"]
    assert gate.evaluate(good, {"roc_auc": 0.6}, {"roc_auc": 0.715}, max_drop=0.01) == []
    worse = gate.evaluate(good, {"roc_auc": 0.6}, {"roc_auc": 0.74}, max_drop=0.01)
    assert worse == ["roc_auc = 0.7100 is worse than the champion's 0.7400 by more than 0.01"]
    assert "no such metric" in gate.evaluate(good, {"f1": 0.5})[0]


def test_gate_cli_on_a_trained_model(gender_model, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    model = gender_model.model_dir
    auc = json.loads((model / "model.json").read_text())["metrics"]["roc_auc"]
    assert gate.main(["--model-dir", str(model), "--min", f"roc_auc={auc - 0.01}",
                      "--report", str(tmp_path / "g.json")]) == 0
    assert json.loads((tmp_path / "g.json").read_text())["passed"] is True
    assert gate.main(["--model-dir", str(model), "--min", f"roc_auc={auc + 0.01}"]) == 1
    assert "FAIL roc_auc" in capsys.readouterr().out
    assert gate.main(["--model-dir", str(tmp_path), "--min", "roc_auc=0.5"]) == 2


# --- SageMaker, against moto's server -------------------------------------------------------
def test_sagemaker_deploy_creates_then_updates_the_endpoint(moto_server: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="models")
    tar = tmp_path / "model.tar.gz"
    tar.write_bytes(b"not really a tarball, S3 does not care")
    common = ["sagemaker", "--image-uri", "123.dkr.ecr.us-east-1.amazonaws.com/mlship:abc", "--model-tar",
              str(tar), "--bucket", "models", "--endpoint", "gender", "--role",
              "arn:aws:iam::123456789012:role/sm", "--endpoint-url", moto_server]
    first = sagemaker.deploy_sagemaker(image_uri=common[2], model_tar=tar, bucket="models", endpoint="gender",
                                    role=common[10], endpoint_url=moto_server)
    assert first["action"] == "created" and first["status"] == "InService"
    import time

    time.sleep(1.1)  # a new deployment name (they carry the second)
    # The second deployment must update the live endpoint in place (no downtime). moto 5.2 does not
    # implement UpdateEndpoint, so this test can only show the call is made, with the new config.
    calls: list[dict[str, str]] = []
    real_client = boto3.client

    def recording_client(service: str, **kw: object) -> object:
        client = real_client(service, **kw)  # type: ignore[call-overload]
        if service == "sagemaker":
            client.meta.events.register("provide-client-params.sagemaker.UpdateEndpoint",
                                        lambda params, **_: calls.append(params))
        return client

    monkeypatch.setattr(boto3, "client", recording_client)
    with pytest.raises(Exception, match="UpdateEndpoint|InternalFailure|500"):
        deploy_main(common)
    monkeypatch.setattr(boto3, "client", real_client)
    assert len(calls) == 1 and calls[0]["EndpointName"] == "gender"
    sm = boto3.client("sagemaker", endpoint_url=moto_server)
    new_config = sm.describe_endpoint_config(EndpointConfigName=calls[0]["EndpointConfigName"])
    assert new_config["EndpointConfigName"] != first["endpoint_config"]
    model = sm.describe_model(ModelName=new_config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Image"] == common[2]
    s3 = boto3.client("s3", endpoint_url=moto_server)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]]
    assert len(keys) == 2 and all(k.endswith("/model.tar.gz") for k in keys)
