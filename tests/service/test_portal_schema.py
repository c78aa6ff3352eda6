"""Property-based run of the portal against its own OpenAPI document (schemathesis + hypothesis).

Every operation gets generated valid and invalid requests: no 5xx ever, every response's status
is documented, and every response body matches the documented schema.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings

from container.paths import MLPaths
from container.settings import Settings
from inference.app import create_app


@pytest.fixture(scope="module")
def portal_app(gender_model: MLPaths, model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    tmp = tmp_path_factory.mktemp("schema")
    app = create_app(Settings.from_env({
        "SM_BASE_DIR": str(gender_model.base), "MLAPP_MODEL_REPOSITORY": str(model_repository),
        "MLAPP_DATABASE_URL": f"sqlite:///{tmp / 'mlapp.db'}", "MLAPP_JOB_WORKER": "false",
        "MLAPP_ALLOWED_ROOTS": str(tmp)}))
    assert app.extensions["model"].wait(30)
    return app


MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


# schemathesis' own pytest integration does not load under this pytest; its strategies do.
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_portal_conforms_to_its_openapi_document(portal_app: Flask, mode: schemathesis.GenerationMode) -> None:
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
            case.call_and_validate()

        exercise()
