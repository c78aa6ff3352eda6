"""The serving app in-process (Flask test client) with real tiny models from `train`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from container.paths import MLPaths
from container.settings import Settings
from inference import predictors
from inference.app import create_app
from inference.codecs import Inputs, Outputs
from tests import factories
from training.gender import synth


def _app(paths: MLPaths, **env: str) -> Flask:
    settings = Settings.from_env({"SM_BASE_DIR": str(paths.base), **env})
    app = create_app(settings)
    assert app.extensions["model"].wait(30), app.extensions["model"].reason
    return app


@pytest.fixture(scope="module")
def client(gender_model: MLPaths) -> FlaskClient:
    return _app(gender_model).test_client()


@pytest.fixture(scope="module")
def numeric_client(numeric_model: MLPaths) -> FlaskClient:
    return _app(numeric_model).test_client()


def _records(n: int = 3) -> list[dict[str, Any]]:
    frame = factories.devices(n, seed=11).drop(columns=["gender"])
    return json.loads(frame.to_json(orient="records"))


def _error(resp: Any) -> dict[str, Any]:
    body = resp.get_json()
    assert set(body) == {"error", "request_id"}
    assert "Traceback" not in resp.get_data(as_text=True)
    return dict(body["error"])


def test_ping_is_healthy_after_warmup(client: FlaskClient) -> None:
    resp = client.get("/ping")
    assert resp.status_code == 200 and resp.get_json() == {"status": "healthy"}


def test_ping_is_503_with_reason_when_the_model_cannot_load(tmp_path: Any) -> None:
    paths = factories.opt_ml(tmp_path)
    app = create_app(Settings.from_env({"SM_BASE_DIR": str(paths.base)}))
    app.extensions["model"].wait(10)
    resp = app.test_client().get("/ping")
    assert resp.status_code == 503
    assert "no model.json" in resp.get_json()["reason"]
    inv = app.test_client().post("/invocations", data="1,2", content_type="text/csv")
    assert inv.status_code == 503 and _error(inv)["code"] == "model_not_ready"


def test_json_records_give_label_and_probability(client: FlaskClient) -> None:
    resp = client.post("/invocations", json=_records(3))
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    preds = resp.get_json()["predictions"]
    assert len(preds) == 3
    for p in preds:
        assert p["label"] in {"F", "M"} and 0.5 <= p["probability"] <= 1.0
        assert p["probability_M"] == pytest.approx(p["probability"] if p["label"] == "M" else 1 - p["probability"], abs=1e-6)
        assert "device_id" in p


def test_all_input_forms_agree(client: FlaskClient) -> None:
    records = _records(4)
    base = client.post("/invocations", json=records).get_json()["predictions"]
    frame = synth.to_csv_frame(factories.devices(4, seed=11).drop(columns=["gender"]))
    forms = [
        ("application/json", json.dumps({"instances": records})),
        ("application/jsonlines", "\n".join(json.dumps(r) for r in records)),
        ("text/csv; charset=utf-8", frame.to_csv(index=False)),
    ]
    for ctype, body in forms:
        resp = client.post("/invocations", data=body, content_type=ctype)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        got = resp.get_json()["predictions"] if resp.mimetype == "application/json" else None
        assert got is not None
        assert [g["probability_M"] for g in got] == pytest.approx([b["probability_M"] for b in base], abs=1e-6)


def test_accept_csv_and_jsonlines(client: FlaskClient) -> None:
    resp = client.post("/invocations", json=_records(2), headers={"Accept": "text/csv"})
    assert resp.mimetype == "text/csv"
    lines = resp.get_data(as_text=True).splitlines()
    assert len(lines) == 2 and lines[0].split(",")[0] in {"F", "M"}
    resp = client.post("/invocations", json=_records(2), headers={"Accept": "application/jsonlines"})
    assert resp.mimetype == "application/jsonlines"
    assert [json.loads(line)["label"] for line in resp.get_data(as_text=True).splitlines()]


def test_error_statuses(client: FlaskClient) -> None:
    assert _error(client.post("/invocations", data="x", content_type="application/xml"))["code"] == "unsupported_media_type"
    r = client.post("/invocations", json=_records(1), headers={"Accept": "application/xml"})
    assert r.status_code == 406 and "application/xml" in _error(r)["message"]
    r = client.post("/invocations", data="{bad json", content_type="application/json")
    assert r.status_code == 400 and "not valid JSON" in _error(r)["message"]
    r = client.post("/invocations", data="1,2,3\n", content_type="text/csv")
    assert r.status_code == 400 and _error(r)["details"]["got"] == 3
    r = client.post("/invocations", json=[{"phone_brand": {"nested": 1}}])
    assert r.status_code == 400 and "'phone_brand' must be a string" in _error(r)["message"]
    r = client.post("/invocations", json=[{"colour": "red"}])
    assert r.status_code == 400 and "device fields" in _error(r)["message"]
    assert client.get("/invocations").status_code == 405
    assert _error(client.get("/nope"))["code"] == "not_found"


def test_empty_body_is_204(client: FlaskClient) -> None:
    assert client.post("/invocations", data="", content_type="text/csv").status_code == 204


def test_payload_cap_is_413_with_json(gender_model: MLPaths) -> None:
    client = _app(gender_model, SAGEMAKER_MAX_PAYLOAD_IN_MB="0.001").test_client()
    resp = client.post("/invocations", data="1," * 2000, content_type="text/csv")
    assert resp.status_code == 413 and "SAGEMAKER_MAX_PAYLOAD_IN_MB" in _error(resp)["message"]


def test_batch_mode_writes_one_line_per_record(gender_model: MLPaths) -> None:
    client = _app(gender_model, SAGEMAKER_BATCH="true").test_client()
    body = "\n".join(json.dumps(r) for r in _records(5))
    resp = client.post("/invocations", data=body, content_type="application/jsonlines",
                       headers={"Accept": "application/json"})
    assert len(resp.get_data(as_text=True).splitlines()) == 5
    resp = client.post("/invocations", data=body, content_type="application/jsonlines",
                       headers={"Accept": "text/csv"})
    assert len(resp.get_data(as_text=True).splitlines()) == 5


def test_custom_attributes_and_request_id_are_echoed(client: FlaskClient) -> None:
    resp = client.post("/invocations", json=_records(1), headers={
        "X-Amzn-SageMaker-Custom-Attributes": "trace=abc,tenant=7",
        "X-Amzn-SageMaker-Inference-Id": "req-42"})
    assert resp.headers["X-Amzn-SageMaker-Custom-Attributes"] == "trace=abc,tenant=7"
    assert resp.headers["X-Request-Id"] == "req-42"
    assert len(client.get("/ping").headers["X-Request-Id"]) == 32


def test_release_reports_the_label_and_the_served_manifest(gender_model: MLPaths) -> None:
    body = _app(gender_model, MLSHIP_RELEASE="reg/mlship:abc123").test_client().get("/release").get_json()
    assert body["release"] == "reg/mlship:abc123"
    assert body["manifest"]["family"] == "gender" and body["version"]
    assert "roc_auc" in json.dumps(body["manifest"].get("metrics", {}))


def test_release_is_503_while_no_model_serves(tmp_path: Any) -> None:
    app = create_app(Settings.from_env({"SM_BASE_DIR": str(factories.opt_ml(tmp_path).base)}))
    app.extensions["model"].wait(10)
    resp = app.test_client().get("/release")
    assert resp.status_code == 503 and _error(resp)["code"] == "model_not_ready"


def test_execution_parameters(client: FlaskClient) -> None:
    body = client.get("/execution-parameters").get_json()
    assert body["BatchStrategy"] == "MULTI_RECORD" and body["MaxPayloadInMB"] == 6
    assert body["MaxConcurrentTransforms"] >= 1


def test_numeric_model_accepts_csv_with_and_without_header(numeric_client: FlaskClient) -> None:
    rows = synth.numeric(3, 6, seed=9).drop(columns=["label"])
    plain = numeric_client.post("/invocations", data=rows.to_csv(index=False, header=False), content_type="text/csv")
    assert plain.status_code == 200
    shuffled = rows[["f5", "f0", "f3", "f1", "f4", "f2"]]  # named columns may come in any order
    headed = numeric_client.post("/invocations", data=shuffled.to_csv(index=False), content_type="text/csv")
    assert headed.status_code == 200
    assert plain.get_json() == headed.get_json()
    lists = numeric_client.post("/invocations", json={"instances": rows.to_numpy().tolist()})
    assert [p["probability"] for p in lists.get_json()["predictions"]] == pytest.approx(
        [p["probability"] for p in plain.get_json()["predictions"]], abs=1e-6)
    wrong = numeric_client.post("/invocations", data="1,2,3,4,5\n", content_type="text/csv")
    assert wrong.status_code == 400 and "must have 6 features; got 5" in _error(wrong)["message"]
    missing = numeric_client.post("/invocations", json=[{"f0": 1.0, "f1": 2.0, "x": 3.0}])
    assert missing.status_code == 400 and "Missing feature column(s): f2, f3, f4, f5" in _error(missing)["message"]


class _Exploding:
    name, version, manifest = "boom", "0", {}

    def predict(self, inputs: Inputs) -> Outputs:
        raise RuntimeError("secret internal detail")

    def warmup(self) -> None:
        return None


def test_unexpected_errors_are_500_json_without_traceback() -> None:
    app = create_app(Settings.from_env({}), predictor=_Exploding())  # type: ignore[arg-type]
    resp = app.test_client().post("/invocations", data="1,2", content_type="text/csv")
    assert resp.status_code == 500
    err = _error(resp)
    assert err["code"] == "internal_error" and "secret" not in resp.get_data(as_text=True)


def test_predictor_load_reports_version_and_name(gender_model: MLPaths) -> None:
    p = predictors.load(gender_model.model_dir)
    assert p.name == "gender" and len(p.version) == 12
