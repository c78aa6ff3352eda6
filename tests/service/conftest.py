"""The portal app as a fixture for the service tests that use it (tests/service/portal_app.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from container.paths import MLPaths
from tests.service.portal_app import OPEN, make_app


@pytest.fixture(autouse=True)
def _close_portal_stores() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


@pytest.fixture
def app(gender_model: MLPaths, model_repository: Path, database_url: str, tmp_path: Path) -> Flask:
    """The portal over the gender model and its repository (v1 XGBoost, v2 logistic regression)."""
    return make_app(gender_model, model_repository, database_url, tmp_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
