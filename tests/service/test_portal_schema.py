"""Property-based run of the portal against its own OpenAPI document (schemathesis + hypothesis).

Every operation gets generated valid and invalid requests: no 5xx ever, every response's status
is documented, and every response body matches the documented schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings

from container.paths import MLPaths
from container.settings import Settings
from inference.app import create_app
from tests import factories
from training.gender import synth

# What a record holds, which models exist and which ids were issued belong to the running portal,
# not to the document. In positive runs, generated values are swapped for real ones (chosen by the
# generated value, so hypothesis still varies them): valid requests then reach real models and real
# predictions, and any 400 among them is a bug.
VALID_RECORDS = json.loads(factories.devices(8, seed=3).drop(columns=["gender"]).to_json(orient="records"))
VERSIONS = ["v1", "v2", None]


def _pick(options: list[Any], seed: Any) -> Any:
    return options[len(json.dumps(seed, default=str)) % len(options)]


def _make_real(case: schemathesis.Case, ids: list[str], files: dict[str, list[str]]) -> None:
    body = case.body if isinstance(case.body, dict) else None
    if body is not None:
        if isinstance(body.get("input"), dict) and "location" in body["input"]:
            body["input"]["location"] = _pick(files["inputs"], body["input"]["location"])
            body["input"].pop("format", None)
        if "output_location" in body:
            body["output_location"] = _pick(files["outputs"], body["output_location"])
        target = body.get("input")
        if isinstance(target, dict):
            target = target.get("records")
        if isinstance(target, list):
            target[:] = [VALID_RECORDS[n % len(VALID_RECORDS)] for n in range(len(target))]
        if isinstance(body.get("model"), str):
            body["model"] = "gender"
        elif isinstance(body.get("model"), dict):
            version = _pick(VERSIONS, body["model"])
            body["model"] = {"name": "gender", **({"version": version} if version else {})}
        shadow = body.get("compare_with")
        if isinstance(shadow, str):
            body["compare_with"] = _pick(["v1", "v2"], shadow)
        elif isinstance(shadow, dict) and "model" in shadow:
            shadow["model"] = {"name": "gender", "version": _pick(["v1", "v2"], shadow["model"])}
        if "prediction_id" in body:
            body["prediction_id"] = _pick(ids, body["prediction_id"])
    query = case.query if isinstance(case.query, dict) else {}
    for key in ("prediction_id", "a", "b"):
        if key in query:
            query[key] = _pick(ids, query[key])


@pytest.fixture(scope="module")
def allowed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("schema")


@pytest.fixture(scope="module")
def files(allowed_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Input files inside the allowed root (by path and file:// URI) and one outside it."""
    inside = allowed_root / "devices.csv"
    outside = tmp_path_factory.mktemp("elsewhere") / "devices.jsonl"
    frame = factories.devices(20, seed=5).drop(columns=["gender"])
    synth.write(frame, inside, "csv")
    synth.write(frame, outside, "jsonl")
    return {"inputs": [str(inside), f"file://{inside}", str(outside)],
            "outputs": [str(allowed_root / "out"), str(outside.parent / "out")]}


@pytest.fixture(scope="module")
def portal_app(gender_model: MLPaths, model_repository: Path, allowed_root: Path) -> Flask:
    tmp = allowed_root
    app = create_app(Settings.from_env({
        "SM_BASE_DIR": str(gender_model.base), "MLAPP_MODEL_REPOSITORY": str(model_repository),
        "MLAPP_DATABASE_URL": f"sqlite:///{tmp / 'mlapp.db'}", "MLAPP_JOB_WORKER": "false",
        "MLAPP_ALLOWED_ROOTS": str(tmp)}))
    assert app.extensions["model"].wait(30)
    return app


@pytest.fixture(scope="module")
def issued_ids(portal_app: Flask) -> list[str]:
    """Predictions in every state the generated requests can meet: online, queued and cancelled."""
    client = portal_app.test_client()
    ids = []
    for model in ("gender", {"name": "gender", "version": "v2"}):
        resp = client.post("/api/providers/prediction/invoke", json={"model": model, "input": VALID_RECORDS[:3]})
        assert resp.status_code == 200, resp.get_json()
        ids.append(resp.get_json()["prediction_id"])
    for _ in range(2):
        resp = client.post("/api/providers/prediction/create", json={"model": "gender", "input": VALID_RECORDS})
        assert resp.status_code == 202, resp.get_json()
        ids.append(resp.get_json()["prediction_id"])
    assert client.post("/api/providers/prediction/cancel", json={"prediction_id": ids[-1]}).status_code == 200
    return ids


MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


# schemathesis' own pytest integration does not load under this pytest; its strategies do.
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_portal_conforms_to_its_openapi_document(portal_app: Flask, issued_ids: list[str],
                                                 files: dict[str, list[str]],
                                                 mode: schemathesis.GenerationMode) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", portal_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        raw = operation.definition.raw
        if mode is schemathesis.GenerationMode.NEGATIVE and not (raw.get("parameters") or raw.get("requestBody")):
            continue  # nothing in the request to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=50, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def exercise(case: schemathesis.Case) -> None:
            if mode is schemathesis.GenerationMode.POSITIVE:
                _make_real(case, issued_ids, files)
            case.call_and_validate()

        exercise()
