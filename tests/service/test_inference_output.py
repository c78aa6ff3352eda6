"""SAGEMAKER_INFERENCE_OUTPUT: the gender answers in the keys AWS's built-in XGBoost container
selects, with its meaning (sagemaker-xgboost-container, algorithm_mode/serve_utils.py and its tests:
binary:logistic p=0.6 -> predicted_label 1, probability 0.6, probabilities [0.4, 0.6], raw_score 0.6,
raw_scores [0.4, 0.6]; CSV '1,"[0.4, 0.6]"'), for CSV, JSON and JSON Lines, on every door."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from container.mediatypes import CSV, JSON, JSONLINES
from container.paths import MLPaths
from container.settings import INFERENCE_KEYS, Settings, SettingsError
from inference import codecs, predictors
from inference.app import create_app
from tests import factories

ALL = ",".join(INFERENCE_KEYS)


def _app(paths: MLPaths, **env: str) -> Flask:
    settings = Settings.from_env({"SM_BASE_DIR": str(paths.base), **env})
    app = create_app(settings)
    assert app.extensions["model"].wait(30), app.extensions["model"].reason
    return app


def _records(n: int = 3, seed: int = 11) -> list[dict[str, Any]]:
    frame = factories.devices(n, seed=seed).drop(columns=["gender"])
    return json.loads(frame.to_json(orient="records"))


@pytest.fixture(scope="module")
def plain(gender_model: MLPaths) -> FlaskClient:
    return _app(gender_model).test_client()


@pytest.fixture(scope="module")
def every_key(gender_model: MLPaths) -> FlaskClient:
    return _app(gender_model, SAGEMAKER_INFERENCE_OUTPUT=ALL).test_client()


@pytest.fixture(scope="module")
def classes(gender_model: MLPaths) -> list[Any]:
    return list(predictors.load(gender_model.model_dir).manifest["classes"])


# --- AWS's documented examples, through our encoder ------------------------------------------
def _selected(paths: MLPaths, keys: str, p: list[float]) -> codecs.Outputs:
    keyed = Settings.from_env({"SAGEMAKER_INFERENCE_OUTPUT": keys}).inference_output
    predictor: Any = predictors.load(paths.model_dir, output_keys=keyed)
    outputs: codecs.Outputs = predictor._outputs(p, None)
    return outputs


def test_p_of_one_tenth_is_the_negative_class_with_probability_one_tenth(gender_model: MLPaths,
                                                                         classes: list[Any]) -> None:
    neg, pos = classes
    out = _selected(gender_model, ALL, [0.6, 0.1])
    assert out.rows() == [
        {"predicted_label": pos, "labels": [neg, pos], "probability": 0.6, "probabilities": [0.4, 0.6],
         "raw_score": 0.6, "raw_scores": [0.4, 0.6]},
        {"predicted_label": neg, "labels": [neg, pos], "probability": 0.1, "probabilities": [0.9, 0.1],
         "raw_score": 0.1, "raw_scores": [0.9, 0.1]},
    ]


def test_csv_writes_the_keys_in_the_order_asked_and_lists_as_aws_does(gender_model: MLPaths,
                                                                     classes: list[Any]) -> None:
    neg, pos = classes
    # AWS's test_encode_selected_predictions_csv: '1,"[0.4, 0.6]"\n0,"[0.9, 0.1]"'
    body, ctype = codecs.encode(_selected(gender_model, "predicted_label,probabilities", [0.6, 0.1]), CSV)
    assert ctype == CSV and body.decode() == f'{pos},"[0.4, 0.6]"\n{neg},"[0.9, 0.1]"\n'
    # Autopilot's example order: predicted_label, probability, probabilities, labels
    body, _ = codecs.encode(_selected(gender_model, "probabilities, labels,Probability", [0.1]), CSV)
    assert body.decode() == f"\"[0.9, 0.1]\",\"['{neg}', '{pos}']\",0.1\n"


def test_json_and_json_lines_are_aws_s_shapes(gender_model: MLPaths, classes: list[Any]) -> None:
    neg, pos = classes
    out = _selected(gender_model, "predicted_label,probabilities", [0.6, 0.1])
    rows = [{"predicted_label": pos, "probabilities": [0.4, 0.6]},
            {"predicted_label": neg, "probabilities": [0.9, 0.1]}]
    body, ctype = codecs.encode(out, JSON)
    assert ctype == JSON and json.loads(body) == {"predictions": rows}
    body, ctype = codecs.encode(out, JSONLINES)
    assert ctype == JSONLINES and [json.loads(line) for line in body.splitlines()] == rows
    assert body.count(b"\n") == len(rows)


@pytest.mark.parametrize("key", INFERENCE_KEYS)
def test_each_key_alone(gender_model: MLPaths, classes: list[Any], key: str) -> None:
    neg, pos = classes
    expected = {"predicted_label": neg, "labels": [neg, pos], "probability": 0.1,
                "probabilities": [0.9, 0.1], "raw_score": 0.1, "raw_scores": [0.9, 0.1]}[key]
    out = _selected(gender_model, key, [0.1])
    assert out.rows() == [{key: expected}]
    cell = codecs.encode(out, CSV)[0].decode()
    assert cell == (f'"{expected}"\n' if isinstance(expected, list) else f"{expected}\n")


# --- served ------------------------------------------------------------------------------------
def test_json_answers_carry_exactly_the_keys_and_agree_with_the_default(plain: FlaskClient,
                                                                       every_key: FlaskClient,
                                                                       classes: list[Any]) -> None:
    neg, pos = classes
    records = _records(5)
    default = plain.post("/invocations", json=records).get_json()["predictions"]
    got = every_key.post("/invocations", json=records).get_json()["predictions"]
    assert len(got) == 5
    for d, g in zip(default, got, strict=True):
        assert list(g) == ["device_id", *INFERENCE_KEYS] and g["device_id"] == d["device_id"]
        assert g["predicted_label"] == d["label"] and g["labels"] == [neg, pos]
        assert g["probability"] == d[f"probability_{pos}"] == g["raw_score"]
        assert g["probabilities"] == pytest.approx([1 - g["probability"], g["probability"]], abs=1e-6)
        assert g["raw_scores"] == g["probabilities"]
        assert d["probability"] == pytest.approx(max(g["probabilities"]), abs=1e-6)  # ours: confidence


def test_many_records_and_json_lines_and_csv(gender_model: MLPaths, plain: FlaskClient) -> None:
    client = _app(gender_model, SAGEMAKER_INFERENCE_OUTPUT="probability,predicted_label").test_client()
    records = _records(70, seed=5)  # past the few-record and the 64-row JSON paths
    default = plain.post("/invocations", json=records).get_json()["predictions"]
    got = client.post("/invocations", json=records).get_json()["predictions"]
    assert [list(g) for g in got] == [["device_id", "probability", "predicted_label"]] * 70
    pos = next(k for k in default[0] if k.startswith("probability_"))
    assert [g["probability"] for g in got] == [d[pos] for d in default]
    lines = client.post("/invocations", json=records, headers={"Accept": "application/jsonlines"})
    assert lines.mimetype == "application/jsonlines"
    assert [json.loads(line) for line in lines.get_data(as_text=True).splitlines()] == got
    csv = client.post("/invocations", json=records, headers={"Accept": "text/csv"})
    assert csv.mimetype == "text/csv"
    assert csv.get_data(as_text=True) == "".join(f"{g['probability']},{g['predicted_label']}\n" for g in got)


def test_batch_mode_keeps_one_line_per_record(gender_model: MLPaths) -> None:
    client = _app(gender_model, SAGEMAKER_BATCH="true", SAGEMAKER_INFERENCE_OUTPUT="labels").test_client()
    body = "\n".join(json.dumps(r) for r in _records(4))
    for accept in ("application/json", "text/csv"):
        resp = client.post("/invocations", data=body, content_type="application/jsonlines",
                           headers={"Accept": accept})
        lines = resp.get_data(as_text=True).splitlines()
        assert len(lines) == 4 and all("labels" in line or line.startswith('"[') for line in lines)


def _numeric_csv(n: int, seed: int = 2) -> str:
    rows = np.random.default_rng(seed).normal(size=(n, 6)).round(4)
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows)


def test_the_models_own_csv_answer_with_output_keys_is_the_general_one(numeric_model: MLPaths) -> None:
    keys = ("predicted_label", "probabilities")
    predictor: Any = predictors.load(numeric_model.model_dir, output_keys=keys)
    default: Any = predictors.load(numeric_model.model_dir)
    for n in (1, 5, 200):
        body = _numeric_csv(n).encode()
        general = codecs.encode(predictor.predict(codecs.decode(body, CSV)), CSV)[0]
        done = predictor.transform(body, CSV, CSV)
        assert done is None or done == (general, n)
        assert general.decode().count('"[') == n
        if done is not None:  # (no compiled walk, no model's own answer: both take the general path)
            assert default.transform(body, CSV, CSV) != done  # the default still writes label,probability
    client = _app(numeric_model, SAGEMAKER_INFERENCE_OUTPUT="predicted_label,probabilities").test_client()
    body = _numeric_csv(3)
    resp = client.post("/invocations", data=body, content_type="text/csv", headers={"Accept": "text/csv"})
    expected = codecs.encode(predictor.predict(codecs.decode(body.encode(), CSV)), CSV)[0]
    assert resp.status_code == 200 and resp.get_data() == expected


def test_multi_model_and_the_portal_invoke_carry_the_same_keys(gender_model: MLPaths, model_repository: Path,
                                                              tmp_path: Path) -> None:
    settings = Settings.from_env({
        "SM_BASE_DIR": str(gender_model.base), "MLAPP_MODEL_REPOSITORY": str(model_repository),
        "MLAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'mlapp.db'}", "MLAPP_DATA_DIR": str(tmp_path / "mlapp"),
        "MLAPP_JOB_WORKER": "false", "MLAPP_ALLOWED_ROOTS": str(tmp_path),
        "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probability"})
    app = create_app(settings)
    try:
        assert app.extensions["model"].wait(30)
        client = app.test_client()
        records = _records(2)
        default = client.post("/invocations", json=records).get_json()["predictions"]
        url = str(model_repository / "gender" / "v2")  # the logistic regression
        assert client.post("/models", json={"model_name": "g2", "url": url}).status_code == 200
        mme = client.post("/models/g2/invoke", json=records).get_json()["predictions"]
        header = client.post("/invocations", json=records,
                             headers={"X-Amzn-SageMaker-Target-Model": "gender/v1"}).get_json()["predictions"]
        portal = client.post("/api/providers/prediction/invoke",
                             json={"model": {"name": "gender", "version": "v1"}, "input": records})
        assert portal.status_code == 200, portal.get_json()
        for answer in (default, mme, header, portal.get_json()["predictions"]):
            assert [set(r) - {"device_id"} for r in answer] == [{"predicted_label", "probability"}] * 2
        assert header == default and [r["probability"] for r in portal.get_json()["predictions"]] == \
            [r["probability"] for r in default]
    finally:
        app.extensions["portal"].close()


def test_an_invalid_key_is_a_start_up_error(gender_model: MLPaths) -> None:
    with pytest.raises(SettingsError, match="SAGEMAKER_INFERENCE_OUTPUT") as err:
        _app(gender_model, SAGEMAKER_INFERENCE_OUTPUT="predicted_label,score")
    assert "score" in str(err.value) and ALL.replace(",", ", ") in str(err.value)
    with pytest.raises(SettingsError, match="SAGEMAKER_INFERENCE_SUPPORTED"):
        _app(gender_model, SAGEMAKER_INFERENCE_OUTPUT="labels",
             SAGEMAKER_INFERENCE_SUPPORTED="predicted_label,probability,probabilities")


def test_unset_the_answer_is_unchanged(plain: FlaskClient) -> None:
    got = plain.post("/invocations", json=_records(2)).get_json()["predictions"]
    assert all(set(g) == {"device_id", "label", "probability", *(k for k in g if k.startswith("probability_"))}
               and len(g) == 4 for g in got)
    csv = plain.post("/invocations", json=_records(2), headers={"Accept": "text/csv"}).get_data(as_text=True)
    assert all(len(line.split(",")) == 2 for line in csv.splitlines())
