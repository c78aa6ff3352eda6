"""The portal's store is optional to SageMaker's contract: when it is down, /ping and /invocations
serve on, the portal answers a 503 naming the store (with Retry-After), and it recovers by itself."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from container.paths import MLPaths
from container.settings import Settings
from inference.app import create_app
from tests import factories

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


def _records(n: int = 2) -> list[dict[str, Any]]:
    return json.loads(factories.devices(n, seed=4).drop(columns=["gender"]).to_json(orient="records"))


def _app(gender_model: MLPaths, tmp_path: Path, **env: str) -> Any:
    app = create_app(Settings.from_env({"SM_BASE_DIR": str(gender_model.base), "MLAPP_DATA_DIR": str(tmp_path / "d"),
                                        **env}))
    assert app.extensions["model"].wait(30)
    return app


def _unavailable(resp: Any) -> str:
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] == "5"
    error = resp.get_json()["error"]
    assert error["code"] == "store_unavailable" and "Traceback" not in resp.get_data(as_text=True)
    return str(error["message"])


def test_an_unreachable_store_at_start_leaves_ping_and_invocations_serving(gender_model: MLPaths,
                                                                          tmp_path: Path) -> None:
    app = _app(gender_model, tmp_path, MLAPP_DATABASE_URL=UNREACHABLE)
    client = app.test_client()
    assert client.get("/ping").status_code == 200
    assert client.post("/invocations", json=_records()).status_code == 200
    message = _unavailable(client.post("/api/providers/prediction/create",
                                       json={"model": "gender", "input": _records()}))
    assert "store is unavailable" in message and "/invocations is not affected" in message
    for internal in ("127.0.0.1", "port 1", "nobody", "psycopg", "Error", "connection"):
        assert internal not in message  # the store's host, port and driver stay in the log
    _unavailable(client.get("/api/providers/prediction/list"))
    assert client.get("/api/openapi.json").status_code == 200  # what needs no store still answers
    assert client.get("/metrics").status_code == 200
    app.extensions["portal_health"].stop()


def test_the_portal_recovers_when_the_store_comes_back(gender_model: MLPaths, tmp_path: Path) -> None:
    blocker = tmp_path / "not-yet"
    blocker.write_text("a file where the store's folder should be")
    app = _app(gender_model, tmp_path, MLAPP_DATABASE_URL=f"sqlite:///{blocker / 'db' / 'mlapp.db'}",
               MLAPP_JOB_WORKER="true")
    client = app.test_client()
    _unavailable(client.post("/api/providers/prediction/invoke", json={"model": "gender", "input": _records()}))
    blocker.unlink()  # the store becomes reachable: no restart
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not app.extensions["portal_health"].ready:
        time.sleep(0.1)
    created = client.post("/api/providers/prediction/create", json={"model": "gender", "input": _records(5)})
    assert created.status_code == 202
    pid = created.get_json()["prediction_id"]
    while time.monotonic() < deadline:  # the batch worker started once the store was there
        status = client.get(f"/api/providers/prediction/check?prediction_id={pid}").get_json()["status"]
        if status == "SUCCEEDED":
            break
        time.sleep(0.1)
    assert status == "SUCCEEDED"
    app.extensions["portal"].close()


def test_a_store_failing_mid_request_is_a_503_not_a_500(gender_model: MLPaths, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(gender_model, tmp_path, MLAPP_JOB_WORKER="false")
    client = app.test_client()
    store = app.extensions["portal"].store

    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT ...", {}, ConnectionRefusedError("server closed the connection"))

    monkeypatch.setattr(store, "insert_finished", down)
    monkeypatch.setattr(store, "list_predictions", down)
    message = _unavailable(client.post("/api/providers/prediction/invoke",
                                       json={"model": "gender", "input": _records()}))
    assert "a query failed" in message and "OperationalError" not in message and "closed" not in message
    _unavailable(client.get("/api/providers/prediction/list"))
    assert client.post("/invocations", json=_records()).status_code == 200
    app.extensions["portal"].close()


def test_api_keys_are_read_once_per_ttl_and_the_last_ones_stand_while_the_store_is_down(
        gender_model: MLPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(gender_model, tmp_path, MLAPP_JOB_WORKER="false")
    client = app.test_client()
    keys, store = app.extensions["portal_keys"], app.extensions["portal"].store
    calls = []
    real = store.key_hashes

    def counted() -> Any:
        calls.append(1)
        return real()

    monkeypatch.setattr(store, "key_hashes", counted)
    for _ in range(20):
        assert client.get("/api/models").status_code == 200
    assert len(calls) == 1  # cached, not a query per request

    def down() -> Any:
        calls.append(1)
        raise OperationalError("SELECT ...", {}, ConnectionRefusedError("down"))

    monkeypatch.setattr(store, "key_hashes", down)
    keys._loaded = -float("inf")  # the cache has expired
    for _ in range(20):
        assert client.get("/api/models").status_code == 200  # no key existed: still open
    assert len(calls) == 2  # one failed read, then the ttl before the next try
    app.extensions["portal"].close()


def test_a_key_check_that_never_read_the_store_fails_closed(gender_model: MLPaths, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(gender_model, tmp_path, MLAPP_JOB_WORKER="false")
    store, keys = app.extensions["portal"].store, app.extensions["portal_keys"]

    def down() -> Any:
        raise OperationalError("SELECT ...", {}, ConnectionRefusedError("down"))

    monkeypatch.setattr(store, "key_hashes", down)
    monkeypatch.setattr(keys, "_known", False)  # as in a worker that has not read the keys yet
    monkeypatch.setattr(keys, "_loaded", -float("inf"))
    assert "API keys unreadable" in _unavailable(app.test_client().get("/api/models"))
    app.extensions["portal"].close()


def test_a_store_that_comes_back_serves_the_next_request_not_the_one_after_the_back_off(
        gender_model: MLPaths, tmp_path: Path) -> None:
    blocker = tmp_path / "not-yet"
    blocker.write_text("a file where the store's folder should be")
    app = _app(gender_model, tmp_path, MLAPP_DATABASE_URL=f"sqlite:///{blocker / 'db' / 'mlapp.db'}",
               MLAPP_JOB_WORKER="false")
    client = app.test_client()
    time.sleep(4)  # the background retries back off to 4 s by now (0.5, 1, 2, 4)
    _unavailable(client.get("/api/providers/prediction/list"))
    blocker.unlink()
    time.sleep(0.6)  # past the gap between two attempts a request may ask for
    started = time.monotonic()
    assert client.get("/api/providers/prediction/list").status_code == 200
    assert time.monotonic() - started < 1.0
    app.extensions["portal_health"].stop()
    app.extensions["portal"].close()
