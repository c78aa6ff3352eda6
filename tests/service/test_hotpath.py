"""The hot path (/ping and POST /invocations in plain WSGI) answers exactly what the Flask routes
answer: the same requests sent both ways give the same status, headers, body and samples."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from container.paths import MLPaths
from container.settings import Settings
from inference import metrics
from inference.app import create_app
from inference.fast.hotpath import HotPath
from tests import factories
from tests.conftest import speed_layer_on
from training.gender import synth

pytestmark = pytest.mark.skipif(not speed_layer_on(), reason="the speed layer's own parts: MLSHIP_FAST is off")


class _Counting:
    """Flask's WSGI callable, counting the requests that reach it."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.calls += 1
        return self.app(environ, start_response)


def _pair(paths: MLPaths, **env: str) -> tuple[Flask, Flask, _Counting]:
    """Two apps on the same model: one as served (hot path first), one with Flask alone."""
    settings = Settings.from_env({"SM_BASE_DIR": str(paths.base), "MLAPP_JOB_WORKER": "false", **env})
    apps = []
    for _ in range(2):  # one at a time: two loaders compiling at once hit CPython 3.11.7's
        # "AST constructor recursion depth mismatch" SystemError here
        app = create_app(settings)
        app.extensions["model"].wait(30)
        assert isinstance(app.wsgi_app, HotPath)
        apps.append(app)
    fast, plain = apps
    counting = _Counting(fast.wsgi_app.flask_app)  # type: ignore[attr-defined]
    fast.wsgi_app.flask_app = counting  # type: ignore[attr-defined]
    plain.wsgi_app = plain.wsgi_app.flask_app  # type: ignore[attr-defined, method-assign]
    return fast, plain, counting


def _records(n: int) -> str:
    return factories.devices(n, seed=4).drop(columns=["gender"]).to_json(orient="records")


def _numeric_csv(n: int) -> str:
    return synth.numeric(n, 6, seed=2).drop(columns=["label"]).to_csv(index=False, header=False)


# (method, path, body, headers, reaches Flask): one row per kind of answer the two routes give
GENDER = [
    ("GET", "/ping", "", {}, False),
    ("POST", "/invocations", _records(1), {"Content-Type": "application/json"}, False),
    ("POST", "/invocations", _records(40), {"Content-Type": "application/json; charset=utf-8",
                                            "Accept": "text/csv"}, False),
    ("POST", "/invocations", _records(3), {"Content-Type": "application/json", "Accept": "application/jsonlines"},
     False),
    ("POST", "/invocations", "\ufeff" + _records(2), {"Content-Type": "application/json"}, False),
    ("POST", "/invocations", _records(2), {"Content-Type": "application/json",
                                           "X-Amzn-SageMaker-Custom-Attributes": "trace=1",
                                           "X-Amzn-SageMaker-Inference-Id": "inf-7"}, False),
    ("POST", "/invocations", '[{"phone_brand": {}}]', {"Content-Type": "application/json"}, False),
    ("POST", "/invocations", "[[[[", {"Content-Type": "application/json"}, False),
    ("POST", "/invocations", "x", {"Content-Type": "image/png"}, False),
    ("POST", "/invocations", _records(1), {"Content-Type": "application/json", "Accept": "image/png"}, False),
    ("POST", "/invocations", "", {"Content-Type": "application/json"}, False),
    ("POST", "/invocations", _records(1), {"Content-Type": "application/json",
                                           "X-Amzn-SageMaker-Target-Model": "nope/3"}, False),
    ("POST", "/invocations", "x" * 2_000_000, {"Content-Type": "text/csv"}, False),
    ("GET", "/invocations", "", {}, True),
    ("HEAD", "/ping", "", {}, True),
    ("GET", "/execution-parameters", "", {}, True),
]
NUMERIC = [
    ("POST", "/invocations", _numeric_csv(1), {"Content-Type": "text/csv"}, False),
    ("POST", "/invocations", _numeric_csv(500), {"Content-Type": "text/csv", "Accept": "application/json"}, False),
    ("POST", "/invocations", "f0,f1,f2,f3,f4,f5\n", {"Content-Type": "text/csv"}, False),
    ("POST", "/invocations", "1,2\n", {"Content-Type": "text/csv"}, False),
    ("POST", "/invocations", "a,b,c\n", {"Content-Type": "text/csv"}, False),
]


def _send(app: Flask, method: str, path: str, body: str, headers: dict[str, str]) -> Any:
    return app.test_client().open(path, method=method, data=body.encode(),
                                  headers={"X-Request-Id": "same-id", **headers})


def _samples(path: str, method: str) -> float:
    return sum(s.value for m in metrics.REQUESTS.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels.get("route") == path and s.labels["method"] == method)


def _compare(fast: Flask, plain: Flask, counting: _Counting, cases: list[Any]) -> None:
    for method, path, body, headers, reaches_flask in cases:
        before = counting.calls
        counted = _samples(path, method)
        got, want = _send(fast, method, path, body, headers), _send(plain, method, path, body, headers)
        label = f"{method} {path} {headers} {body[:40]!r}"
        assert (counting.calls > before) == reaches_flask, label
        assert got.status == want.status, label
        assert dict(got.headers) == dict(want.headers), label
        assert got.get_data() == want.get_data(), label
        assert "Traceback" not in got.get_data(as_text=True)
        if not reaches_flask:
            assert _samples(path, method) == counted + 2, label  # one sample per app, same labels


def test_gender_answers_match_flask(gender_model: MLPaths) -> None:
    _compare(*_pair(gender_model, SAGEMAKER_MAX_PAYLOAD_IN_MB="1"), GENDER)


def test_numeric_answers_match_flask(numeric_model: MLPaths) -> None:
    _compare(*_pair(numeric_model), NUMERIC)


def test_ping_and_invocations_without_a_model_match_flask(tmp_path: Any) -> None:
    paths = factories.opt_ml(tmp_path)  # no model: /ping is 503 with the reason
    _compare(*_pair(paths), [("GET", "/ping", "", {}, False),
                             ("POST", "/invocations", "1,2", {"Content-Type": "text/csv"}, False)])


def test_an_unexpected_error_is_the_same_json_500(gender_model: MLPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, plain, counting = _pair(gender_model)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    for app in (fast, plain):
        monkeypatch.setattr(app.extensions["hosting"].dataplane, "invoke", broken)
    got = _send(fast, "POST", "/invocations", _records(1), {"Content-Type": "application/json"})
    want = _send(plain, "POST", "/invocations", _records(1), {"Content-Type": "application/json"})
    assert got.status_code == want.status_code == 500 and counting.calls == 0
    assert got.get_data() == want.get_data() and "a bug" not in got.get_data(as_text=True)
    assert json.loads(got.get_data())["error"]["code"] == "internal_error"
