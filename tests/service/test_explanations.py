"""Online explanations in Clarify's envelope (X-Amzn-SageMaker-Enable-Explanations), in-process."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from flask.testing import FlaskClient

from container.paths import MLPaths
from inference import predictors
from inference.codecs import Inputs
from modelformat.gender.contributions import FIELDS
from tests import factories
from tests.service.test_serving_app import _app, _records

HEADER = "X-Amzn-SageMaker-Enable-Explanations"

# Clarify's documented response (Developer Guide, "Invoke the endpoint", Response), for tabular data:
# version, predictions {content_type, data}, label_headers, explanations ({} or kernel_shap: one
# entry per record, null when not explained, else one object per feature with attributions whose
# attribution holds one value per label). method and expected_value are ours, beside them.
ATTRIBUTION = {
    "type": "object", "required": ["attribution"], "additionalProperties": False,
    "properties": {"attribution": {"type": "array", "minItems": 1, "items": {"type": "number"}}},
}
FEATURE = {
    "type": "object", "required": ["feature_header", "attributions"], "additionalProperties": False,
    "properties": {"feature_header": {"type": "string"},
                   "attributions": {"type": "array", "minItems": 1, "items": ATTRIBUTION}},
}
SCHEMA = {
    "type": "object", "required": ["version", "predictions", "label_headers", "explanations"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": "1.0"},
        "predictions": {"type": "object", "required": ["content_type", "data"], "additionalProperties": False,
                        "properties": {"content_type": {"type": "string"}, "data": {"type": "string"}}},
        "label_headers": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "explanations": {
            "type": "object", "additionalProperties": False,
            "properties": {"kernel_shap": {"type": "array", "items": {
                "oneOf": [{"type": "null"}, {"type": "array", "minItems": 1, "items": FEATURE}]}}},
        },
        "method": {"type": "string"},
        "expected_value": {"type": "array", "items": {"type": "number"}},
    },
}


@pytest.fixture(scope="module")
def client(gender_model: MLPaths) -> FlaskClient:
    return _app(gender_model).test_client()


@pytest.fixture(scope="module")
def logreg(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[FlaskClient, Path]:
    paths = factories.opt_ml(tmp_path_factory.mktemp("logreg"))
    shutil.rmtree(paths.model_dir, ignore_errors=True)
    shutil.copytree(model_repository / "gender" / "v2", paths.model_dir)
    return _app(paths).test_client(), paths.model_dir


def _explain(client: FlaskClient, records: Any, expression: str = "`true`", **kw: Any) -> Any:
    return client.post("/invocations", json=records, headers={HEADER: expression, **kw})


def _margins(model_dir: Path, records: list[dict[str, Any]]) -> np.ndarray:
    predictor: Any = predictors.load(model_dir)
    x = predictor.features(Inputs(raw=records))
    scorer = predictor.scorer
    if hasattr(scorer, "booster"):
        import xgboost as xgb

        return np.asarray(scorer.booster.predict(xgb.DMatrix(x), output_margin=True), dtype=np.float64)
    return np.asarray(x @ scorer.coef).ravel() + scorer.intercept


def _field_values(entry: list[dict[str, Any]]) -> dict[str, float]:
    return {f["feature_header"]: f["attributions"][0]["attribution"][0] for f in entry}


def _check_additive(body: dict[str, Any], margins: np.ndarray, probabilities: list[float]) -> None:
    jsonschema.validate(body, SCHEMA)
    bias = body["expected_value"][0]
    for entry, margin, p in zip(body["explanations"]["kernel_shap"], margins, probabilities, strict=True):
        values = _field_values(entry)
        assert list(values) == list(FIELDS)
        assert sum(values.values()) + bias == pytest.approx(margin, abs=1e-5)
        assert 1 / (1 + math.exp(-margin)) == pytest.approx(p, abs=1e-6)  # the answer's probability


def test_xgboost_attributions_add_up_to_the_margin(client: FlaskClient, gender_model: MLPaths) -> None:
    records = _records(12)
    resp = _explain(client, records)
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    plain = json.loads(body["predictions"]["data"])["predictions"]
    assert body["label_headers"] == ["M"] and "TreeSHAP" in body["method"]
    _check_additive(body, _margins(gender_model.model_dir, records), [p["probability_M"] for p in plain])


def test_logistic_regression_attributions_add_up_to_the_margin(logreg: tuple[FlaskClient, Path]) -> None:
    client, model_dir = logreg
    records = _records(9)
    body = _explain(client, records).get_json()
    plain = json.loads(body["predictions"]["data"])["predictions"]
    assert "training mean" in body["method"]
    _check_additive(body, _margins(model_dir, records), [p["probability_M"] for p in plain])


def test_one_field_that_moves_the_prediction_gets_the_attribution(logreg: tuple[FlaskClient, Path],
                                                                  client: FlaskClient) -> None:
    """Two records differing only in device_model: the change lands on device_model alone (logistic
    regression), and is the largest change of any field (XGBoost's TreeSHAP)."""
    base = _records(30)
    for who in (logreg[0], client):
        moved = None
        for record in base:
            for other in base:
                if other["device_model"] == record["device_model"]:
                    continue
                pair = [record, {**record, "device_model": other["device_model"]}]
                body = _explain(who, pair).get_json()
                a, b = (_field_values(e) for e in body["explanations"]["kernel_shap"])
                delta = {f: abs(b[f] - a[f]) for f in a}
                if delta["device_model"] > 0.05:
                    moved = delta
                    break
            if moved:
                break
        assert moved is not None, "no device_model changes this model's prediction"
        assert max(moved, key=lambda f: moved[f]) == "device_model"
        if who is logreg[0]:
            assert all(v < 1e-9 for f, v in moved.items() if f != "device_model")


def test_records_the_expression_does_not_select_are_null(client: FlaskClient) -> None:
    records = _records(10)
    plain = client.post("/invocations", json=records).get_json()["predictions"]
    cut = float(np.median([p["probability_M"] for p in plain]))
    body = _explain(client, records, f"probability_M > `{cut}`").get_json()
    jsonschema.validate(body, SCHEMA)
    entries = body["explanations"]["kernel_shap"]
    assert [e is not None for e in entries] == [p["probability_M"] > cut for p in plain]
    assert any(e is None for e in entries) and any(e is not None for e in entries)
    none = _explain(client, records, "`false`").get_json()
    jsonschema.validate(none, SCHEMA)
    assert none["explanations"] == {} and "method" not in none


def test_the_plain_answer_is_inside_and_unchanged_without_the_header(client: FlaskClient) -> None:
    records = _records(3)
    plain = client.post("/invocations", json=records)
    assert plain.mimetype == "application/json" and set(plain.get_json()) == {"predictions"}
    body = _explain(client, records).get_json()
    assert body["predictions"] == {"content_type": "application/json", "data": plain.get_data(as_text=True)}
    csv = client.post("/invocations", json=records, headers={"Accept": "text/csv"})
    explained = _explain(client, records, "[1] > `0.0`", Accept="text/csv")
    assert explained.mimetype == "application/json"
    body = explained.get_json()
    jsonschema.validate(body, SCHEMA)
    assert body["predictions"] == {"content_type": "text/csv", "data": csv.get_data(as_text=True)}
    assert all(e is not None for e in body["explanations"]["kernel_shap"])


@pytest.mark.parametrize("expression", [
    "probability >",  # a syntax error
    "",  # empty
    "a" * 1025,  # longer than 1 KiB
    "abs(label)",  # raises on the answer (a string where a number is wanted)
    "label",  # neither true, false nor null
    "!" * 900 + "`true`",  # nested deep
    "[" * 600,
])
def test_hostile_expressions_are_400s(client: FlaskClient, expression: str) -> None:
    resp = _explain(client, _records(2), expression)
    assert resp.status_code == 400, resp.get_data(as_text=True)[:300]
    error = resp.get_json()["error"]
    assert error["code"] == "bad_input" and HEADER in error["message"]
    assert "Traceback" not in resp.get_data(as_text=True)


def test_the_speed_layer_leaves_explanation_requests_to_flask() -> None:
    from inference.fast import fastlane

    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 3\r\n"
    assert fastlane.parse(head + b"\r\n1,2") is not None
    assert fastlane.parse(head + HEADER.encode() + b": `true`\r\n\r\n1,2") is None


def test_featurised_rows_keep_one_header_per_column(numeric_model: MLPaths,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Numeric rows (CSV, no device fields): one feature_header per column; and records explained in
    chunks add up as one batch does."""
    from modelformat.gender import contributions

    monkeypatch.setattr(contributions, "CHUNK", 2)
    client = _app(numeric_model).test_client()
    predictor: Any = predictors.load(numeric_model.model_dir)
    rows = np.random.default_rng(3).normal(size=(5, predictor.n_features)).round(3)
    body_csv = "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    resp = client.post("/invocations", data=body_csv, content_type="text/csv",
                       headers={HEADER: "`true`", "Accept": "text/csv"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    jsonschema.validate(body, SCHEMA)
    import xgboost as xgb

    margins = predictor.scorer.booster.predict(xgb.DMatrix(rows.astype(np.float32)), output_margin=True)
    for entry, margin in zip(body["explanations"]["kernel_shap"], margins, strict=True):
        values = _field_values(entry)
        assert list(values) == predictor.pipeline.feature_names
        assert sum(values.values()) + body["expected_value"][0] == pytest.approx(float(margin), abs=1e-5)


def test_a_model_without_explanations_is_a_400() -> None:
    """The propensity family has no ``explain``: the request is refused, naming the model."""
    from types import SimpleNamespace

    from inference import explanations
    from inference.codecs import Outputs
    from inference.errors import BadInput

    model = SimpleNamespace(name="pairs")
    outputs = Outputs(columns={"score": [0.5]}, csv_columns=["score"])
    with pytest.raises(BadInput, match="pairs gives no explanations"):
        explanations.envelope(model, Inputs(raw=[{"user": 1}]), outputs, "application/json", b"{}",
                              "application/json", explanations.selector("`true`"))
