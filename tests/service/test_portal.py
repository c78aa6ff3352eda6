"""MLapp in-process: create / invoke / check / list / cancel / retry / compare, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient

from container.paths import MLPaths
from inference.portal.jobs import JobService
from tests import factories
from tests.service.portal_app import OPEN, make_app
from training.gender import synth

_OPEN = OPEN  # the name the other portal test files import


def jobs(app: Flask) -> JobService:
    return app.extensions["portal"]  # type: ignore[no-any-return]


def records(n: int, seed: int = 3, with_truth: bool = False) -> list[dict[str, Any]]:
    frame = factories.devices(n, seed=seed)
    if not with_truth:
        frame = frame.drop(columns=["gender"])
    return list(json.loads(frame.to_json(orient="records")))


def err(resp: Any) -> str:
    body = resp.get_json()
    assert "Traceback" not in resp.get_data(as_text=True)
    return str(body["error"]["message"])


def drain(app: Flask) -> None:
    while jobs(app).run_one():
        pass


def test_create_runs_in_background_and_check_pages_results(app: Flask, client: FlaskClient) -> None:
    resp = client.post("/api/providers/prediction/create",
                       json={"model": {"name": "gender", "version": "v1"}, "input": records(60)})
    assert resp.status_code == 202
    created = resp.get_json()
    assert created["status"] == "QUEUED" and created["rows_total"] == 60
    pid = created["prediction_id"]
    drain(app)
    done = client.get(f"/api/providers/prediction/check?prediction_id={pid}&limit=10&offset=50").get_json()
    assert done["status"] == "SUCCEEDED" and done["rows_done"] == 60 and done["progress"] == 1.0
    assert done["results"]["total"] == 60 and len(done["results"]["rows"]) == 10
    assert done["results"]["rows"][0]["label"] in {"F", "M"}
    assert done["started_at"] and done["finished_at"] and done["duration_seconds"] >= 0
    post = client.post("/api/providers/prediction/check", json={"prediction_id": pid}).get_json()
    assert post["results"]["total"] == 60


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_create_from_a_location_with_an_output_location(app: Flask, client: FlaskClient, tmp_path: Path, fmt: str) -> None:
    frame = factories.devices(70, seed=8).drop(columns=["gender"])
    src = tmp_path / f"in.{fmt}"
    synth.write(frame, src, fmt)
    out = tmp_path / "out"
    resp = client.post("/api/providers/prediction/create", json={
        "model": "gender", "input": {"location": f"file://{src}"}, "output_location": str(out)})
    assert resp.status_code == 202, resp.get_json()
    drain(app)
    pid = resp.get_json()["prediction_id"]
    done = client.get(f"/api/providers/prediction/check?prediction_id={pid}").get_json()
    assert done["status"] == "SUCCEEDED" and done["rows_done"] == 70
    assert done["results_location"] == str(out)
    parts = sorted(out.glob("part-*.jsonl"))
    assert [p.name for p in parts] == ["part-000000.jsonl", "part-000001.jsonl", "part-000002.jsonl"]
    lines = [json.loads(line) for p in parts for line in p.read_text().splitlines()]
    assert len(lines) == 70 and all(r["label"] in {"F", "M"} for r in lines)
    # the same records sent online get the same answers: each reader hands the model what was written
    online = client.post("/api/providers/prediction/invoke", json={
        "model": {"name": "gender", "version": done["model"]["version"]},
        "input": json.loads(frame.to_json(orient="records"))}).get_json()["predictions"]
    assert [r["probability"] for r in lines] == pytest.approx([r["probability"] for r in online], abs=1e-6)


def test_create_from_s3_with_results_to_s3(app: Flask, client: FlaskClient, moto_server: str) -> None:
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="batch")
    frame = factories.devices(60, seed=9).drop(columns=["gender"])
    s3.put_object(Bucket="batch", Key="in/devices.jsonl", Body=frame.to_json(orient="records", lines=True).encode())
    resp = client.post("/api/providers/prediction/create", json={
        "model": "gender", "input": {"location": "s3://batch/in/devices.jsonl"},
        "output_location": "s3://batch/out/run1"})
    assert resp.status_code == 202, resp.get_json()
    drain(app)
    done = client.get(f"/api/providers/prediction/check?prediction_id={resp.get_json()['prediction_id']}").get_json()
    assert done["status"] == "SUCCEEDED" and done["rows_done"] == 60, done
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="batch", Prefix="out/run1/")["Contents"])
    assert keys == [f"out/run1/part-{n:06d}.jsonl" for n in range(3)]
    lines = [json.loads(line) for key in keys
             for line in s3.get_object(Bucket="batch", Key=key)["Body"].read().decode().splitlines()]
    assert len(lines) == 60 and all(r["label"] in {"F", "M"} for r in lines)
    missing = client.post("/api/providers/prediction/create", json={
        "model": "gender", "input": {"location": "s3://batch/in/absent.jsonl"}})
    assert missing.status_code == 202
    drain(app)
    failed = client.get(f"/api/providers/prediction/check?prediction_id={missing.get_json()['prediction_id']}").get_json()
    assert failed["status"] == "FAILED" and failed["error"] == "Cannot read input s3://batch/in/absent.jsonl: no such object", failed


def test_bad_create_requests(client: FlaskClient, tmp_path: Path) -> None:
    cases = [
        ({"model": "nope", "input": records(2)}, 404, "Unknown model 'nope'"),
        ({"model": {"name": "gender", "version": "v9"}, "input": records(2)}, 404, "has no version 'v9'"),
        ({"model": "gender"}, 400, "'input' must be"),
        ({"model": "gender", "input": []}, 400, "non-empty list"),
        ({"model": "gender", "input": {"location": "/etc/passwd"}}, 403, "outside the allowed roots"),
        ({"model": "gender", "input": {"location": "ftp://x/y.csv"}}, 403, "scheme 'ftp' is not allowed"),
        ({"model": "gender", "input": {"location": str(tmp_path / "missing.csv")}}, 400, "does not exist"),
        ({"model": 5, "input": records(1)}, 400, "'model' must be"),
    ]
    for body, status, message in cases:
        resp = client.post("/api/providers/prediction/create", json=body)
        assert resp.status_code == status and message in err(resp), (body, resp.get_json())
    resp = client.post("/api/providers/prediction/create", data="{oops", content_type="application/json")
    assert resp.status_code == 400 and "not valid JSON" in err(resp)
    resp = client.post("/api/providers/prediction/create", data="a,b", content_type="text/csv")
    assert resp.status_code == 415
    assert client.get("/api/providers/prediction/check?prediction_id=missing").status_code == 404
    assert client.get("/api/providers/prediction/check").status_code == 400
    assert client.get("/api/providers/prediction/check?prediction_id=x&limit=0").status_code == 400


def test_state_machine_cancel_and_retry(app: Flask, client: FlaskClient) -> None:
    pid = client.post("/api/providers/prediction/create", json={"model": "gender", "input": records(5)}).get_json()["prediction_id"]
    cancelled = client.post("/api/providers/prediction/cancel", json={"prediction_id": pid})
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "CANCELLED"
    again = client.post("/api/providers/prediction/cancel", json={"prediction_id": pid})
    assert again.status_code == 409 and "only QUEUED or RUNNING" in err(again)
    drain(app)  # a cancelled job is never picked up
    assert client.get(f"/api/providers/prediction/check?prediction_id={pid}").get_json()["status"] == "CANCELLED"
    retried = client.post("/api/providers/prediction/retry", json={"prediction_id": pid})
    assert retried.status_code == 200 and retried.get_json()["status"] == "QUEUED"
    drain(app)
    assert client.get(f"/api/providers/prediction/check?prediction_id={pid}").get_json()["status"] == "SUCCEEDED"
    late = client.post("/api/providers/prediction/retry", json={"prediction_id": pid})
    assert late.status_code == 409 and "only FAILED or CANCELLED" in err(late)


def test_failed_job_reports_error_and_can_be_retried(app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"colour": "red"}\n')
    pid = client.post("/api/providers/prediction/create", json={"model": "gender", "input": {"location": str(src)}}).get_json()["prediction_id"]
    drain(app)
    failed = client.get(f"/api/providers/prediction/check?prediction_id={pid}").get_json()
    assert failed["status"] == "FAILED" and "device fields" in failed["error"]
    synth.write(factories.devices(10).drop(columns=["gender"]), src, "jsonl")
    assert client.post("/api/providers/prediction/retry", json={"prediction_id": pid}).status_code == 200
    drain(app)
    ok = client.get(f"/api/providers/prediction/check?prediction_id={pid}").get_json()
    assert ok["status"] == "SUCCEEDED" and ok["results"]["total"] == 10 and ok["error"] is None


def test_list_filters(app: Flask, client: FlaskClient) -> None:
    a = client.post("/api/providers/prediction/create", json={"model": "gender", "input": records(3)}).get_json()["prediction_id"]
    client.post("/api/providers/prediction/invoke", json={"model": "gender", "input": records(2)})
    client.post("/api/providers/prediction/cancel", json={"prediction_id": a})
    listing = client.get("/api/providers/prediction/list").get_json()["predictions"]
    assert {p["kind"] for p in listing} == {"batch", "online"}
    cancelled = client.get("/api/providers/prediction/list?status=CANCELLED").get_json()["predictions"]
    assert [p["prediction_id"] for p in cancelled] == [a]
    assert client.get("/api/providers/prediction/list?status=DONE").status_code == 400
    assert len(client.get("/api/providers/prediction/list?kind=online").get_json()["predictions"]) == 1


def test_invoke_records_and_shadow_compares_versions(app: Flask, client: FlaskClient) -> None:
    recs = records(40, with_truth=True)
    resp = client.post("/api/providers/prediction/invoke", json={
        "model": {"name": "gender", "version": "v1"}, "input": recs, "compare_with": "v2"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert len(body["predictions"]) == 40 and body["model"]["version"] == "v1"
    assert body["shadow"]["model"]["version"] == "v2"
    cmp_ = body["comparison"]
    assert cmp_["rows_compared"] == 40 and 0 <= cmp_["agreement_rate"] <= 1
    assert sum(sum(v.values()) for v in cmp_["label_confusion"].values()) == 40
    assert cmp_["score_delta"]["max_abs"] >= abs(cmp_["score_delta"]["mean"])
    assert sum(cmp_["score_delta"]["histogram"]["counts"]) == 40
    assert cmp_["quality"]["a"]["labelled_rows"] == 40 and "roc_auc" in cmp_["quality"]["b"]
    # The recorded rows are what the comparison is computed from.
    again = client.get(f"/api/providers/prediction/compare?a={body['prediction_id']}&b={body['shadow']['prediction_id']}").get_json()
    assert again["agreement_rate"] == cmp_["agreement_rate"]
    check = client.get(f"/api/providers/prediction/check?prediction_id={body['prediction_id']}").get_json()
    assert check["status"] == "SUCCEEDED" and check["results"]["total"] == 40 and check["kind"] == "online"
    shadow = client.get(f"/api/providers/prediction/check?prediction_id={body['shadow']['prediction_id']}").get_json()
    assert shadow["compare_of"] == body["prediction_id"]


def test_compare_batch_against_online_on_the_same_inputs(app: Flask, client: FlaskClient) -> None:
    recs = records(30)
    online = client.post("/api/providers/prediction/invoke", json={"model": {"name": "gender", "version": "v2"}, "input": recs}).get_json()
    batch = client.post("/api/providers/prediction/create", json={"model": {"name": "gender", "version": "v1"}, "input": recs}).get_json()
    drain(app)
    got = client.get(f"/api/providers/prediction/compare?a={batch['prediction_id']}&b={online['prediction_id']}").get_json()
    assert got["rows_compared"] == 30 and got["rows_only_in_a"] == 0
    assert client.get("/api/providers/prediction/compare?a=x").status_code == 400


def test_models_listing(client: FlaskClient) -> None:
    models = client.get("/api/models").get_json()["models"]
    assert {(m["name"], m["version"]) for m in models} >= {("gender", "v1"), ("gender", "v2")}
    assert client.post("/invocations", json=records(1)).status_code == 200  # default model untouched


def test_api_keys_guard_the_portal_only(gender_model: MLPaths, model_repository: Path, database_url: str, tmp_path: Path) -> None:
    from inference.portal.auth import hash_key, new_key
    from inference.portal.store import Store

    app = make_app(gender_model, model_repository, database_url, tmp_path, MLAPP_AUTH="auto")
    client = app.test_client()
    assert client.get("/api/models").status_code == 200  # auto, no keys yet
    store = Store(database_url)
    _OPEN.append(store)
    key = new_key()
    store.add_key("ci", hash_key(key))
    assert key not in json.dumps(store.keys())  # only the hash is stored
    app.extensions["portal"].store.migrate()
    fresh = make_app(gender_model, model_repository, database_url, tmp_path, MLAPP_AUTH="auto").test_client()
    denied = fresh.get("/api/models")
    assert denied.status_code == 401 and "API key" in err(denied)
    assert fresh.get("/api/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert fresh.get("/api/models", headers={"X-Api-Key": key}).status_code == 200
    assert fresh.get("/api/models", headers={"X-Api-Key": key + "x"}).status_code == 401
    assert fresh.get("/ping").status_code == 200
    assert fresh.post("/invocations", json=records(1)).status_code == 200
    store.revoke_key("ci")
    later = make_app(gender_model, model_repository, database_url, tmp_path, MLAPP_AUTH="required").test_client()
    assert later.get("/api/models", headers={"X-Api-Key": key}).status_code == 401


def test_multi_model_endpoint_api(client: FlaskClient, model_repository: Path) -> None:
    assert client.get("/models").get_json() == {"models": []}
    assert client.delete("/models/non-existing-model").status_code == 404
    url = str(model_repository / "gender" / "v2")
    assert client.post("/models", json={"model_name": "g2", "url": url}).status_code == 200
    dup = client.post("/models", json={"model_name": "g2", "url": url})
    assert dup.status_code == 409
    assert client.post("/models", json={"model_name": "x", "url": "/nope"}).status_code == 404
    assert client.get("/models").get_json() == {"models": [{"modelName": "g2", "modelUrl": url}]}
    inv = client.post("/models/g2/invoke", json=records(2), headers={"X-Amzn-SageMaker-Target-Model": "g2.tar.gz"})
    assert inv.status_code == 200 and len(inv.get_json()["predictions"]) == 2
    # the header on plain /invocations picks the model: a loaded one, or <name>/<version> of the repository
    via_header = client.post("/invocations", json=records(2), headers={"X-Amzn-SageMaker-Target-Model": "g2.tar.gz"})
    assert via_header.get_json() == inv.get_json()
    v1 = client.post("/invocations", json=records(2), headers={"X-Amzn-SageMaker-Target-Model": "gender/v1"})
    default = client.post("/invocations", json=records(2))
    assert v1.status_code == 200 and v1.get_json() == default.get_json()  # v1 is the default model's copy
    assert v1.get_json() != inv.get_json()
    missing = client.post("/invocations", json=records(1), headers={"X-Amzn-SageMaker-Target-Model": "nope"})
    assert missing.status_code == 404 and "Unknown model 'nope'" in err(missing)
    assert client.delete("/models/g2").status_code == 200
    gone = client.post("/models/g2/invoke", json=records(1))
    assert gone.status_code == 404 and err(gone) == "Model not found: g2"


def test_page_is_served(client: FlaskClient) -> None:
    with client.get("/mlapp/") as page:
        assert page.status_code == 200 and b"Prediction jobs" in page.data
    spec = client.get("/api/openapi.json").get_json()
    assert "/api/providers/prediction/create" in spec["paths"]


def test_capture_records_invocations_without_blocking(gender_model: MLPaths, model_repository: Path, database_url: str, tmp_path: Path) -> None:
    app = make_app(gender_model, model_repository, database_url, tmp_path, DATA_CAPTURE_PERCENT="100")
    client = app.test_client()
    for _ in range(3):
        assert client.post("/invocations", json=records(2)).status_code == 200
    capture = app.extensions["capture"]
    capture.queue.join()
    assert capture.recorded == 3
    captured = client.get("/api/providers/prediction/list?kind=capture").get_json()["predictions"]
    assert len(captured) == 3 and all(p["rows_done"] == 2 for p in captured)


def test_capture_survives_a_dead_store(gender_model: MLPaths, model_repository: Path, tmp_path: Path) -> None:
    db = tmp_path / "mlapp.db"
    app = make_app(gender_model, model_repository, f"sqlite:///{db}", tmp_path, DATA_CAPTURE_PERCENT="100")
    client = app.test_client()
    capture = app.extensions["capture"]
    capture.store.engine.dispose()
    capture.store.engine = capture.store.record_engine = __import__("sqlalchemy").create_engine(
        "sqlite:////nonexistent/dir/x.db")
    for _ in range(3):
        assert client.post("/invocations", json=records(1)).status_code == 200
    capture.queue.join()
    assert capture.failed == 3 and capture.recorded == 0


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(resp.get_data(as_text=True)) for s in fam.samples}


def test_metrics_count_requests_rows_jobs_and_capture(gender_model: MLPaths, model_repository: Path, database_url: str, tmp_path: Path) -> None:
    app = make_app(gender_model, model_repository, database_url, tmp_path, DATA_CAPTURE_PERCENT="100")
    client = app.test_client()
    before = scrape(client)
    for _ in range(3):
        assert client.post("/invocations", json=records(4)).status_code == 200
    online = client.post("/api/providers/prediction/invoke", json={"model": "gender", "input": records(5)})
    assert online.status_code == 200
    portal_version = online.get_json()["model"]["version"]
    assert client.post("/api/providers/prediction/create", json={"model": "gender", "input": records(30)}).status_code == 202
    drain(app)
    app.extensions["capture"].queue.join()
    assert client.post("/invocations", data=b"{", content_type="application/json").status_code == 400
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    served = app.extensions["model"].predictor
    version = served.version
    inv = {"route": "/invocations", "method": "POST"}
    assert delta("mlship_http_requests_total", **inv, status="200", model_version=version) == 3
    assert delta("mlship_http_requests_total", **inv, status="400", model_version="") == 1
    assert delta("mlship_http_request_duration_seconds_count", route="/invocations", model_version=version) == 3
    assert delta("mlship_predicted_rows_total", door="invocations", model=served.name, model_version=version) == 12
    assert delta("mlship_http_requests_total", route="/api/providers/prediction/invoke", method="POST",
                 status="200", model_version=portal_version) == 1
    assert delta("mlship_predicted_rows_total", door="portal_invoke", model="gender", model_version=portal_version) == 5
    assert delta("mlship_predicted_rows_total", door="batch", model="gender", model_version=portal_version) == 30
    assert delta("mlship_capture_total", outcome="recorded") == 3
    assert after[("mlship_portal_predictions", (("status", "SUCCEEDED"),))] >= 2
    assert ("mlship_portal_predictions", (("status", "QUEUED"),)) in after


def test_schema_migrations_are_recorded_and_idempotent(database_url: str) -> None:
    from inference.portal.store import MIGRATIONS, Store

    store = Store(database_url)
    _OPEN.append(store)
    assert store.migrate() == MIGRATIONS[-1][0]
    assert store.migrate() == MIGRATIONS[-1][0]
    assert store.schema_version() == MIGRATIONS[-1][0]


def _migrate_in_child(url: str) -> int:
    from inference.portal.store import Store

    store = Store(url)
    try:
        return store.migrate()
    finally:
        store.close()


def test_workers_booting_together_on_a_fresh_sqlite_file_all_migrate(tmp_path: Path) -> None:
    """gunicorn forks its workers at once; each migrates the same new file (this once crashed serve)."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'fresh' / 'mlapp.db'}"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        versions = pool.map(_migrate_in_child, [url] * 12)
    from inference.portal.store import MIGRATIONS

    assert versions == [MIGRATIONS[-1][0]] * 12


def test_lease_takeover_resumes_without_losing_or_duplicating_rows(app: Flask, client: FlaskClient) -> None:
    """A worker that dies mid-job: another claims it after the lease and finishes it exactly once."""
    service = jobs(app)
    pid = client.post("/api/providers/prediction/create", json={"model": "gender", "input": records(100)}).get_json()["prediction_id"]
    claim = service.store.claim_next("dead-worker", lease_seconds=0.2)
    assert claim is not None and claim.prediction_id == pid
    # The dead worker committed one chunk (25 rows) and then vanished.
    frame = pd.DataFrame.from_records(records(100)[:25])
    _, predictor = service.models.predictor("gender")
    from inference.codecs import Inputs
    from inference.portal.records import result_rows

    out = predictor.predict(Inputs(table=frame))
    assert service.store.commit_chunk(claim, result_rows(records(100)[:25], out.rows(), 0, 1.0), 25, 0.2)
    assert service.store.claim_next("other", 30) is None  # lease still valid
    import time

    time.sleep(0.3)
    assert service.run_one()  # the live worker takes over after expiry
    done = client.get(f"/api/providers/prediction/check?prediction_id={pid}&limit=1000").get_json()
    assert done["status"] == "SUCCEEDED" and done["attempts"] == 2
    rows = done["results"]["rows"]
    assert done["results"]["total"] == 100 and len(rows) == 100
    # The zombie's late write is refused: its lease is gone.
    assert not service.store.commit_chunk(claim, [], 50, 30)


@pytest.mark.postgres
@pytest.mark.parametrize("durable", [False, True])
def test_online_records_skip_the_wal_flush_unless_durable(pg_url: str, durable: bool) -> None:
    from inference.portal.store import Store

    store = Store(pg_url, durable_records=durable)
    _OPEN.append(store)
    store.migrate()  # the record engine keeps the URL's own options (here: the test's schema)
    pid = store.insert_finished(kind="online", model_name="g", model_version="v", input_spec={"inline_records": 1},
                                rows=[{"row_index": 0, "input_sha256": "0" * 64, "output": "{}"}], started_at=1.0)
    assert store.get(pid)["status"] == "SUCCEEDED" and store.row_count(pid) == 1  # type: ignore[index]
    with store.record_engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == ("on" if durable else "off")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"  # jobs always wait


def test_a_capped_job_keeps_to_its_rows_per_second(gender_model: MLPaths, model_repository: Path,
                                                  database_url: str, tmp_path: Path) -> None:
    import time

    app = make_app(gender_model, model_repository, database_url, tmp_path, MLAPP_JOB_MAX_ROWS_PER_SECOND="100")
    created = app.test_client().post("/api/providers/prediction/create",
                                     json={"model": "gender", "input": records(100)}).get_json()
    began = time.monotonic()
    drain(app)
    took = time.monotonic() - began
    done = app.test_client().get(f"/api/providers/prediction/check?prediction_id={created['prediction_id']}"
                                 ).get_json()
    assert done["status"] == "SUCCEEDED" and done["rows_done"] == 100
    assert took >= 0.95, took  # 100 rows at 100 rows/s: the cap paced the chunks (a lower bound only)
