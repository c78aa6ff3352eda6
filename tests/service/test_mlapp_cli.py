"""The `mlapp` admin CLI against a real store: keys it creates open the portal, revoked ones do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from container.settings import Settings
from inference.app import create_app
from inference.portal.cli import run


def _portal(tmp_path: Path, url: str, gender_model, model_repository):  # type: ignore[no-untyped-def]
    settings = Settings.from_env({
        "SM_BASE_DIR": str(gender_model.base), "MLAPP_MODEL_REPOSITORY": str(model_repository),
        "MLAPP_DATABASE_URL": url, "MLAPP_JOB_WORKER": "false", "MLAPP_DATA_DIR": str(tmp_path / "d")})
    return create_app(settings)


def test_keys_create_list_revoke_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           gender_model, model_repository) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'mlapp.db'}"
    app = _portal(tmp_path, url, gender_model, model_repository)
    client = app.test_client()
    assert client.get("/api/models").status_code == 200  # auth=auto and no key yet: open

    assert run(["--database-url", url, "--json", "keys", "create", "jenkins"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("mlapp_") and created["name"] == "jenkins"

    assert run(["--database-url", url, "--json", "keys", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["name"] for k in listed] == ["jenkins"] and "key" not in listed[0]
    assert created["key"] not in json.dumps(listed)

    checker = app.extensions["portal_keys"]
    checker.ttl = 0.0
    assert client.get("/api/models").status_code == 401
    ok = client.get("/api/models", headers={"Authorization": f"Bearer {created['key']}"})
    assert ok.status_code == 200

    assert run(["--database-url", url, "keys", "revoke", "jenkins"]) == 0
    assert client.get("/api/models", headers={"X-Api-Key": created["key"]}).status_code == 401
    assert run(["--database-url", url, "keys", "revoke", "jenkins"]) == 1
    assert "no active key" in capsys.readouterr().err
    app.extensions["portal"].close()


def test_unreachable_store_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--database-url", "postgresql://nobody@127.0.0.1:1/none", "keys", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlapp: the store at postgresql://nobody@127.0.0.1:1/none failed:")
    assert "Traceback" not in err
