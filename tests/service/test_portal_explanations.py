"""The portal's "explain": invoke and batch jobs record each record's attributions with the prediction,
answer them, and older databases gain the column they are kept in."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from inference import explanations
from inference.errors import BadInput
from inference.portal.store import MIGRATIONS, Store
from modelformat.gender.contributions import FIELDS
from tests.service.test_portal import _OPEN, drain, err, records


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _check_explanation(prediction: dict[str, Any], positive: str = "M") -> None:
    e = prediction["explanation"]
    assert e["label"] == positive
    assert [a["feature_header"] for a in e["attributions"]] != []
    assert sorted(a["feature_header"] for a in e["attributions"]) == sorted(FIELDS)
    magnitudes = [abs(a["attribution"]) for a in e["attributions"]]
    assert magnitudes == sorted(magnitudes, reverse=True)  # largest first
    total = e["expected_value"] + sum(a["attribution"] for a in e["attributions"])
    assert total == pytest.approx(e["margin"], abs=1e-5)  # additive
    # ... and the margin is the model's log-odds of its answer (rounded to 6 decimals on the wire)
    p = prediction[f"probability_{positive}"]
    if 1e-4 < p < 1 - 1e-4:
        assert e["margin"] == pytest.approx(_logit(p), abs=1e-6 / (p * (1 - p)) + 1e-4)


@pytest.mark.parametrize("version", ["v1", "v2"])  # XGBoost's TreeSHAP, logistic regression's own
def test_invoke_explains_records_and_check_returns_what_was_recorded(client: FlaskClient, version: str) -> None:
    resp = client.post("/api/providers/prediction/invoke", json={
        "model": {"name": "gender", "version": version}, "input": records(6), "explain": True})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert len(body["predictions"]) == 6
    for prediction in body["predictions"]:
        _check_explanation(prediction)
    stored = client.get(f"/api/providers/prediction/check?prediction_id={body['prediction_id']}").get_json()
    assert [r["explanation"] for r in stored["results"]["rows"]] == [
        p["explanation"] for p in body["predictions"]]


def test_invoke_without_explain_records_none_and_a_shadow_is_explained_too(client: FlaskClient) -> None:
    plain = client.post("/api/providers/prediction/invoke", json={"model": "gender", "input": records(3)})
    assert all("explanation" not in p for p in plain.get_json()["predictions"])
    shadowed = client.post("/api/providers/prediction/invoke", json={
        "model": {"name": "gender", "version": "v1"}, "input": records(3), "compare_with": "v2",
        "explain": True}).get_json()
    assert all("explanation" in p for p in shadowed["shadow"]["predictions"])
    # the two versions explain the same records differently (different models), same fields
    a = shadowed["predictions"][0]["explanation"]["margin"]
    b = shadowed["shadow"]["predictions"][0]["explanation"]["margin"]
    assert a != b


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_explain_must_be_a_boolean(client: FlaskClient, value: Any) -> None:
    for route in ("invoke", "create"):
        resp = client.post(f"/api/providers/prediction/{route}",
                           json={"model": "gender", "input": records(2), "explain": value})
        assert resp.status_code == 400
        assert "'explain' must be true or false" in err(resp)


def test_a_batch_job_records_explanations_chunk_by_chunk(app: Flask, client: FlaskClient) -> None:
    resp = client.post("/api/providers/prediction/create",
                       json={"model": "gender", "input": records(60), "explain": True})
    assert resp.status_code == 202
    drain(app)
    pid = resp.get_json()["prediction_id"]
    done = client.get(f"/api/providers/prediction/check?prediction_id={pid}&limit=100").get_json()
    assert done["status"] == "SUCCEEDED" and done["rows_done"] == 60
    rows = done["results"]["rows"]
    assert len(rows) == 60  # three chunks of 25, 25, 10
    for row in rows:
        _check_explanation(row)
    # the same records online give the same attributions: a record's explanation is its own
    online = client.post("/api/providers/prediction/invoke", json={
        "model": {"name": "gender", "version": done["model"]["version"]}, "input": records(60)[30:33],
        "explain": True}).get_json()["predictions"]
    for got, want in zip(rows[30:33], online, strict=True):
        assert [a["attribution"] for a in got["explanation"]["attributions"]] == pytest.approx(
            [a["attribution"] for a in want["explanation"]["attributions"]], abs=1e-9)


def test_a_batch_job_to_an_output_location_writes_explanations_in_its_lines(app: Flask, client: FlaskClient,
                                                                             tmp_path: Path) -> None:
    out = tmp_path / "explained"
    resp = client.post("/api/providers/prediction/create", json={
        "model": "gender", "input": records(30), "explain": True, "output_location": str(out)})
    assert resp.status_code == 202
    drain(app)
    lines = [json.loads(line) for p in sorted(out.glob("part-*.jsonl")) for line in p.read_text().splitlines()]
    assert len(lines) == 30
    for line in lines:
        _check_explanation(line)


def test_a_model_without_explanations_is_named() -> None:
    class Scores:
        name = "propensity"

    with pytest.raises(BadInput, match="Model propensity gives no explanations"):
        explanations.explainer(Scores())


def _version_1(url: str) -> None:
    """A portal database as version 1 of the schema made it: no explanation, no idempotency key."""
    from inference.portal import store as store_module

    later = {"explanation", "idempotency_key", "request_sha256"}
    old = sa.MetaData()
    tables = [sa.Table(t.name, old, *[sa.Column(c.name, c.type, primary_key=c.primary_key)
                                      for c in t.columns if c.name not in later])
              for t in (store_module.predictions, store_module.prediction_rows, store_module.api_keys)]
    engine = store_module.engine_for(url)
    with engine.begin() as conn:
        store_module.schema_migrations.create(conn)
        for table in tables:
            table.create(conn)
        conn.execute(store_module.schema_migrations.insert().values(version=1, applied_at=0.0))
        conn.execute(tables[0].insert().values(
            id="p", kind="online", status="SUCCEEDED", model_name="gender", model_version="v1",
            input_spec="{}", rows_done=1, attempts=1, created_at=0.0))
        conn.execute(tables[1].insert().values(prediction_id="p", row_index=0, input_sha256="0" * 64,
                                               output="{}"))
    engine.dispose()


def test_a_version_1_database_gains_the_explanation_column_and_the_idempotency_key(database_url: str) -> None:
    """A portal database made before explanations and request ids: the migrations add the columns
    and the unique index, and the rows stay readable."""
    _version_1(database_url)
    store = Store(database_url)
    _OPEN.append(store)
    assert store.migrate() == MIGRATIONS[-1][0] == 3
    with store.engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert "explanation" in {c["name"] for c in inspector.get_columns("prediction_rows")}
        assert {"idempotency_key", "request_sha256"} <= {c["name"] for c in inspector.get_columns("predictions")}
        unique = [i for i in inspector.get_indexes("predictions") if i["name"] == "ix_predictions_idempotency_key"]
        assert unique and unique[0]["unique"]
    assert store.rows("p") == [{"prediction_id": "p", "row_index": 0, "input_sha256": "0" * 64, "label": None,
                                "score": None, "output": "{}", "truth": None, "latency_ms": None,
                                "explanation": None}]
    assert store.get("p")["idempotency_key"] is None  # type: ignore[index]
    assert store.migrate() == 3  # and again: nothing to do
