"""`deploy sagemaker --clarify-explanations`: SageMaker Clarify's online explainer on the release's
endpoint config. botocore's Stubber checks the exact CreateModel and CreateEndpointConfig requests
against SageMaker's API model (a key the API does not have fails); moto runs the whole deploy, with the
request captured as the client sends it (moto 5.2.5 drops ExplainerConfig); every refusal is made before
any client is asked anything. The model tarballs are written here from a small manifest."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deploy.__main__ import main as deploy_main
from deploy.errors import DeployError
from deploy.sagemaker import clarify, endpoint
from deploy.sagemaker.aws import Aws
from deploy.sagemaker.requests import Options
from tests.unit.test_deploy_sagemaker import (  # noqa: F401  (aws_env, stamped: fixtures)
    IMAGE,
    NEW,
    ROLE,
    _aws,
    _stubbed,
    aws_env,
    stamped,
)
from tests.unit.test_deploy_sagemaker_ranges import calls  # noqa: F401  (fixture)

COLUMNS = ["f0", "f1", "f2"]
WARMUP: list[dict[str, Any]] = [{"f0": 0.25, "f1": 2, "f2": None}, {"f0": 1.5, "f1": 0, "f2": 3.0}]
TRAINING_MEANS = "0.5,1.25,3.0\n"  # as training writes explainer-baseline.csv: one row, repr precision
# what the deploy sends for the model above with --clarify-explanations '[1]>`0.5`' --clarify-samples 64
# --clarify-use-logit --clarify-seed 0 (a seed of 0, which the SDK 3.27's serialiser would drop)
EXPLAINER: dict[str, Any] = {"ClarifyExplainerConfig": {
    "EnableExplanations": "[1]>`0.5`",
    "InferenceConfig": {"MaxRecordCount": 1000, "MaxPayloadInMB": 6, "ProbabilityIndex": 1,
                        "LabelHeaders": ["M"], "FeatureHeaders": ["f0", "f1", "f2"]},
    "ShapConfig": {"ShapBaselineConfig": {"MimeType": "text/csv", "ShapBaseline": "0.5,1.25,3.0"},
                   "NumberOfSamples": 64, "UseLogit": True, "Seed": 0}}}
OPTIONS = clarify.ClarifyOptions("[1]>`0.5`", samples=64, use_logit=True, seed=0)
ARGS = ["--clarify-explanations", "[1]>`0.5`", "--clarify-samples", "64", "--clarify-use-logit",
        "--clarify-seed", "0"]
VARIANTS = [{"VariantName": "AllTraffic", "ModelName": NEW, "InitialVariantWeight": 1.0,
             "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]


def _tar(tmp_path: Path, *, kind: str = "numeric", columns: list[str] | None = COLUMNS,
         baseline: str | None = TRAINING_MEANS, name: str = "model.tar.gz") -> Path:
    """model.tar.gz as `train` packs a gender model: model.json, warmup.json and, for numeric input,
    explainer-baseline.csv (named by the manifest)."""
    manifest: dict[str, Any] = {
        "family": "gender", "algorithm": "xgboost", "classes": ["F", "M"], "positive_class": "M",
        "input": {"kind": kind, "columns": columns if kind == "numeric" else None,
                  "raw_fields": ["phone_brand", "installed_apps"] if kind != "numeric" else None,
                  "n_features": len(columns or [])}}
    files = {"warmup.json": json.dumps(WARMUP)}
    if baseline is not None:
        manifest["explainer_baseline"] = "explainer-baseline.csv"
        files["explainer-baseline.csv"] = baseline
    files["model.json"] = json.dumps(manifest)
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# --- the requests, through botocore's Stubber ---------------------------------------------------------
def _stub_session(sm: Any) -> Any:
    """A boto3 session whose SageMaker client is the stubbed one: the SDK's resources make theirs from it."""
    import boto3

    class Session(boto3.Session):
        def client(self, name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "sagemaker":
                return sm
            return super().client(name, *args, **kwargs)

    return Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_create_model_and_endpoint_config_carry_the_explainer_exactly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")  # the SDK would ask IAM about the role
    utils = pytest.importorskip("sagemaker.core.utils.utils", reason="the sagemaker SDK is not installed")
    utils.SageMakerClient.reset()
    tar = _tar(tmp_path)
    rel = endpoint.Release(IMAGE, tar, "models", "gender", ROLE, Options(clarify=OPTIONS))
    explainer = clarify.plan(OPTIONS, tar, rel.environment)
    sm, stub = _stubbed("sagemaker")
    data = f"s3://models/gender/{NEW}/model.tar.gz"
    stub.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{NEW}"}, {
        "ModelName": NEW, "ExecutionRoleArn": ROLE, "PrimaryContainer": {
            "Image": IMAGE, "ModelDataUrl": data,
            "Environment": {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probability", "MLSHIP_RELEASE": NEW}}})
    stub.add_response("describe_model", {  # the SDK reads the model back
        "ModelName": NEW, "ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{NEW}",
        "CreationTime": datetime(2026, 12, 1, tzinfo=UTC), "PrimaryContainer": {"Image": IMAGE},
        "ExecutionRoleArn": ROLE}, {"ModelName": NEW})
    stub.add_response("create_endpoint_config", {
        "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{NEW}"},
        {"EndpointConfigName": NEW, "ProductionVariants": VARIANTS, "ExplainerConfig": EXPLAINER})
    aws = Aws(_stub_session(sm), "us-east-1", sm, None, None, None, None)

    endpoint._create_model_and_config(aws, rel, NEW, data, VARIANTS, explainer)

    stub.assert_no_pending_responses()


def test_the_stubber_refuses_a_key_the_api_does_not_have() -> None:
    """What makes the test above able to fail: `ContentType` is no ClarifyInferenceConfig field (the
    request's MIME type is the baseline's, ShapBaselineConfig.MimeType), nor is a shape's typo."""
    from botocore.exceptions import ParamValidationError

    sm, stub = _stubbed("sagemaker")
    for config in ({"ClarifyExplainerConfig": {**EXPLAINER["ClarifyExplainerConfig"], "InferenceConfig": {
                        **EXPLAINER["ClarifyExplainerConfig"]["InferenceConfig"], "ContentType": "text/csv"}}},
                   {"ClarifyExplainerConfig": {**EXPLAINER["ClarifyExplainerConfig"], "InferenceConfig": {
                        "MaxPayloadInMb": 6}}}):
        stub.add_response("create_endpoint_config", {
            "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{NEW}"})
        with pytest.raises(ParamValidationError, match="Unknown parameter in ExplainerConfig"):
            sm.create_endpoint_config(EndpointConfigName=NEW, ProductionVariants=VARIANTS, ExplainerConfig=config)


# --- the whole deploy, against moto ----------------------------------------------------------------
def _clarify_answer(n: int, explained: bool = True) -> dict[str, Any]:
    from botocore.response import StreamingBody

    shap = [[{"feature_header": c, "attributions": [{"attribution": [0.1]}]} for c in COLUMNS]
            if explained else None for _ in range(n)]
    body = json.dumps({"version": "1.0", "label_headers": ["M"],
                       "predictions": {"content_type": "text/csv", "data": "M,0.7\n" * n},
                       "explanations": {"kernel_shap": shap}}).encode()
    return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}


def _sent_configs(aws: Aws) -> list[dict[str, Any]]:
    """CreateEndpointConfig requests as sent, by the deploy's boto3 client or by the clients the SDK's
    resources make from the session later (a client copies the session's handlers when it is made)."""
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(json.loads(json.dumps(params)))

    for events in (aws.sm.meta.events, aws.session.events):
        events.register("provide-client-params.sagemaker.CreateEndpointConfig", record)
    return sent


@pytest.mark.e2e  # moto's server
def test_a_deploy_with_clarify_sends_the_explainer_and_smoke_tests_through_it(
        aws_env: str, tmp_path: Path, stamped: None, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    import boto3

    runtime, rstub = _stubbed("sagemaker-runtime")
    # Clarify takes CSV (or JSON Lines) only: the warm-up records as rows in the manifest's column order
    rstub.add_response("invoke_endpoint", _clarify_answer(2), {
        "EndpointName": "gender", "ContentType": "text/csv", "Accept": "text/csv",
        "Body": "0.25,2,\n1.5,0,3.0", "EnableExplanations": "`true`"})
    aws = _aws(aws_env, runtime=runtime)
    sent = _sent_configs(aws)
    monkeypatch.setattr(Aws, "connect", classmethod(lambda cls, *a, **k: aws))
    argv = ["sagemaker", "--image-uri", IMAGE, "--model-tar", str(_tar(tmp_path)), "--bucket", "models",
            "--endpoint", "gender", "--role", ROLE, "--poll-seconds", "0", *ARGS]

    assert deploy_main(argv) == 0, capsys.readouterr().err

    captured = capsys.readouterr()
    rstub.assert_no_pending_responses()
    assert [s["ExplainerConfig"] for s in sent] == [EXPLAINER]
    out = json.loads(captured.out)
    assert out["smoke_test"] == "passed" and out["endpoint_config"] == NEW
    assert out["explainer"] == {"enable_explanations": "[1]>`0.5`", "probability_index": 1,
                                "baseline": "model.tar.gz explainer-baseline.csv (training means)",
                                "environment": {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probability"}}
    assert ("deploy: explanations: SageMaker Clarify's online explainer is attached (EnableExplanations "
            "'[1]>`0.5`', the score at CSV column 1), baseline from model.tar.gz explainer-baseline.csv "
            "(training means); the model's environment gains SAGEMAKER_INFERENCE_OUTPUT=predicted_label,"
            "probability") in captured.err
    model = boto3.client("sagemaker").describe_model(ModelName=NEW)["PrimaryContainer"]
    assert model["Environment"] == {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probability",
                                    "MLSHIP_RELEASE": NEW}


@pytest.mark.e2e  # moto's server
def test_a_deploy_without_clarify_sends_no_explainer_and_the_plain_smoke_test(
        aws_env: str, tmp_path: Path, stamped: None) -> None:  # noqa: F811
    import boto3

    from tests.unit.test_deploy_sagemaker import _answer

    runtime, rstub = _stubbed("sagemaker-runtime")
    rstub.add_response("invoke_endpoint", _answer(2), {
        "EndpointName": "gender", "ContentType": "application/json", "Accept": "application/json",
        "Body": json.dumps({"instances": WARMUP})})
    aws = _aws(aws_env, runtime=runtime)
    sent = _sent_configs(aws)
    out = endpoint.deploy(aws, endpoint.Release(IMAGE, _tar(tmp_path), "models", "gender", ROLE,
                                                  poll_seconds=0, wait_seconds=60))
    assert out["explainer"] is None and out["smoke_test"] == "passed"
    assert len(sent) == 1 and "ExplainerConfig" not in sent[0]  # sent by the SDK's client
    model = boto3.client("sagemaker").describe_model(ModelName=NEW)["PrimaryContainer"]
    assert model["Environment"] == {"MLSHIP_RELEASE": NEW}


@pytest.mark.e2e  # moto's server
def test_a_smoke_test_the_explainer_fails_rolls_nothing_back_on_a_new_endpoint_and_says_why(
        aws_env: str, tmp_path: Path, stamped: None) -> None:  # noqa: F811
    runtime, rstub = _stubbed("sagemaker-runtime")
    rstub.add_response("invoke_endpoint", _clarify_answer(2, explained=False))
    rel = endpoint.Release(IMAGE, _tar(tmp_path), "models", "gender", ROLE, Options(clarify=OPTIONS),
                            poll_seconds=0, wait_seconds=60)
    with pytest.raises(DeployError, match=f"{NEW} on gender failed its smoke test .*not every one explained"):
        endpoint.deploy(_aws(aws_env, runtime=runtime), rel, say=lambda _: None)


@pytest.mark.parametrize("answer,why", [
    (json.dumps({"predictions": [{"label": "M"}]}), "not Clarify's"),
    (json.dumps({"predictions": {"data": "M,0.7\n"}, "explanations": {"kernel_shap": [[{}]]}}),
     "2 examples sent, 1 predictions back from the explainer"),
])
def test_the_explainer_smoke_test_checks_the_answer(answer: str, why: str) -> None:
    from botocore.response import StreamingBody

    runtime, rstub = _stubbed("sagemaker-runtime")
    rstub.add_response("invoke_endpoint", {"Body": StreamingBody(io.BytesIO(answer.encode()), len(answer))})
    found = clarify.smoke(runtime, "gender", WARMUP, COLUMNS)
    assert found is not None and why in found


# --- what the model and the options decide ------------------------------------------------------------
def test_selected_output_keys_place_the_probability_and_leave_the_environment_alone(tmp_path: Path) -> None:
    env = {"SAGEMAKER_INFERENCE_OUTPUT": "Probabilities, probability,predicted_label",
           "SAGEMAKER_MAX_PAYLOAD_IN_MB": "50"}
    found = clarify.plan(OPTIONS, _tar(tmp_path), env)
    inference = found.config["ClarifyExplainerConfig"]["InferenceConfig"]
    assert inference["ProbabilityIndex"] == 1 and inference["MaxPayloadInMB"] == 25
    assert found.environment == {}


def test_a_baseline_file_or_uri_replaces_the_models(tmp_path: Path) -> None:
    rows = tmp_path / "baseline.csv"
    rows.write_text("0,0,0\n1, 2 ,3\n\n")
    found = clarify.plan(clarify.ClarifyOptions("`true`", baseline_file=rows), _tar(tmp_path), {})
    shap = found.config["ClarifyExplainerConfig"]["ShapConfig"]
    assert shap == {"ShapBaselineConfig": {"MimeType": "text/csv", "ShapBaseline": "0,0,0\n1,2,3"},
                    "UseLogit": False}
    assert found.baseline_source == f"--clarify-baseline {rows}"
    rows.write_text(",".join(["0." + "1" * 1362, "0." + "1" * 1363, "0." + "1" * 1363]))  # 4096 characters
    found = clarify.plan(clarify.ClarifyOptions("`true`", baseline_file=rows), _tar(tmp_path), {})
    assert len(found.config["ClarifyExplainerConfig"]["ShapConfig"]["ShapBaselineConfig"]["ShapBaseline"]) == 4096
    uri = "s3://models/baselines/gender.csv"
    found = clarify.plan(clarify.ClarifyOptions("`true`", baseline_uri=uri), _tar(tmp_path, baseline=None), {})
    assert found.config["ClarifyExplainerConfig"]["ShapConfig"]["ShapBaselineConfig"] == {
        "MimeType": "text/csv", "ShapBaselineUri": uri}


def test_feature_headers_beyond_the_apis_limit_are_left_out(tmp_path: Path) -> None:
    columns = [f"c{i}" for i in range(257)]
    found = clarify.plan(OPTIONS, _tar(tmp_path, columns=columns, baseline=",".join("0" * 257)), {})
    assert "FeatureHeaders" not in found.config["ClarifyExplainerConfig"]["InferenceConfig"]
    assert "FeatureHeaders left out (257 columns" in found.baseline_source


def _argv(tar: Path, *extra: str) -> list[str]:
    return ["sagemaker", "--image-uri", IMAGE, "--model-tar", str(tar), "--bucket", "models",
            "--endpoint", "gender", "--role", ROLE, *extra]


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rows.csv"
    path.write_text(text)
    return str(path)


REFUSED: list[tuple[str, dict[str, Any], list[str], str]] = [
    ("device records", {"kind": "device_records", "baseline": None}, ["--clarify-explanations", "`true`"],
     "the model takes device records (JSON with list fields such as installed_apps), and Clarify's explainer "
     "perturbs CSV columns; for device records use the image's own explanations instead: send "
     "X-Amzn-SageMaker-Enable-Explanations"),
    ("no baseline", {"baseline": None}, ["--clarify-explanations", "`true`"],
     "carries no explainer baseline (model.json explainer_baseline: None); pass --clarify-baseline FILE "
     "(header-less CSV rows, 3 columns) or --clarify-baseline-uri S3"),
    ("model baseline too narrow", {"baseline": "0.5,1.25\n"}, ["--clarify-explanations", "`true`"],
     "the baseline (model.tar.gz explainer-baseline.csv (training means)) row 1 has 2 values, the model "
     "takes 3 columns"),
    ("file too wide", {}, ["--clarify-explanations", "`true`", "--clarify-baseline", "ROWS:1,2,3\n1,2,3,4\n"],
     "row 2 has 4 values, the model takes 3 columns"),
    ("header line", {}, ["--clarify-explanations", "`true`", "--clarify-baseline", "ROWS:f0,f1,f2\n1,2,3\n"],
     "row 1 holds 'f0', not a number (a header line?"),
    ("over 4096 characters", {}, ["--clarify-explanations", "`true`", "--clarify-baseline",
                                  "ROWS:" + "0.123456789,0.123456789,0.123456789\n" * 120],
     "is 4319 characters, and ShapBaseline takes at most 4096: give fewer rows"),
    ("expression too long", {}, ["--clarify-explanations", "`" + "t" * 64 + "`"],
     "--clarify-explanations has 66 characters, not 1..64 (ClarifyExplainerConfig.EnableExplanations)"),
    ("not JMESPath", {}, ["--clarify-explanations", "[1]>0.5"],
     "--clarify-explanations '[1]>0.5' is not a JMESPath expression (invalid token"),
    ("no samples", {}, ["--clarify-explanations", "`true`", "--clarify-samples", "0"],
     "--clarify-samples 0 is outside 1..2147483647 (ClarifyShapConfig.NumberOfSamples)"),
    ("too many samples", {}, ["--clarify-explanations", "`true`", "--clarify-samples", str(2**31)],
     "--clarify-samples 2147483648 is outside 1..2147483647"),
    ("seed beyond 32 bits", {}, ["--clarify-explanations", "`true`", "--clarify-seed", str(-(2**31) - 1)],
     "--clarify-seed -2147483649 is outside -2147483648..2147483647 (ClarifyShapConfig.Seed)"),
    ("baseline twice", {}, ["--clarify-explanations", "`true`", "--clarify-baseline", "ROWS:1,2,3",
                            "--clarify-baseline-uri", "s3://b/k.csv"],
     "--clarify-baseline and --clarify-baseline-uri exclude each other"),
    ("baseline uri", {}, ["--clarify-explanations", "`true`", "--clarify-baseline-uri", "b/k.csv"],
     "--clarify-baseline-uri 'b/k.csv' is not an s3:// (or https://) URI of at most 1024 characters"),
    ("output keys without probability", {}, ["--clarify-explanations", "`true`", "--environment",
                                             "SAGEMAKER_INFERENCE_OUTPUT=predicted_label,probabilities"],
     "SAGEMAKER_INFERENCE_OUTPUT='predicted_label,probabilities' has no 'probability' key"),
    ("serverless", {}, ["--clarify-explanations", "`true`", "--serverless-memory-mb", "2048"],
     "--clarify-explanations needs a real-time endpoint on instances: Clarify's online explainer does not "
     "serve with --serverless-memory-mb"),
    ("a/b split", {}, ["--clarify-explanations", "`true`", "--ab-weight", "0.2"],
     "the explainer covers every variant of the endpoint config"),
    ("options without the explainer", {}, ["--clarify-samples", "10"],
     "the --clarify-* options shape the explainer --clarify-explanations EXPR attaches; pass it too"),
    ("environment the image refuses", {}, ["--environment", "SAGEMAKER_INFERENCE_OUTPUT=label"],
     "--environment SAGEMAKER_INFERENCE_OUTPUT='label' is invalid: unknown key(s) label"),
    ("environment the deploy sets", {}, ["--environment", "MLSHIP_RELEASE=x"],
     "--environment MLSHIP_RELEASE: the deploy sets it"),
    ("environment without a value", {}, ["--environment", "SAGEMAKER_BATCH"],
     "--environment takes NAME=VALUE, not 'SAGEMAKER_BATCH'"),
]


@pytest.mark.parametrize("model,extra,message", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_refused_explainer_sends_nothing(tmp_path: Path, calls: list[str],  # noqa: F811
                                           capsys: pytest.CaptureFixture[str], model: dict[str, Any],
                                           extra: list[str], message: str) -> None:
    args = [_write(tmp_path, a[len("ROWS:"):]) if a.startswith("ROWS:") else a for a in extra]
    assert deploy_main(_argv(_tar(tmp_path, **model), *args)) == 1
    err = capsys.readouterr().err
    assert err.startswith("deploy: FAILED ") and message in err, err
    assert err.rstrip().endswith("nothing was changed"), err
    assert calls == []  # not even DescribeEndpoint: no create, no upload
