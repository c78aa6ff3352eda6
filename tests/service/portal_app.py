"""The portal app the service tests run: the serving app on a temporary /opt/ml, a model repository
and a database of their own; every store it opens is closed after the test (tests/service/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from container.paths import MLPaths
from container.settings import Settings
from inference.app import create_app

OPEN: list[Any] = []  # what the test opened, closed after it


def make_app(base: MLPaths, repo: Path, url: str, tmp: Path, **env: str) -> Flask:
    settings = Settings.from_env({"SM_BASE_DIR": str(base.base), "MLAPP_MODEL_REPOSITORY": str(repo),
                                  "MLAPP_DATABASE_URL": url, "MLAPP_DATA_DIR": str(tmp / "mlapp"),
                                  "MLAPP_JOB_WORKER": "false", "MLAPP_ALLOWED_ROOTS": str(tmp),
                                  "MLAPP_JOB_CHUNK_ROWS": "25", **env})
    app = create_app(settings)
    OPEN.append(app.extensions["portal"])
    if app.extensions.get("capture") is not None:
        OPEN.append(app.extensions["capture"].store)
    assert app.extensions["model"].wait(30)
    return app
