"""Explanations on a real `serve` (MLSHIP_FAST on and off): a keep-alive HTTP/1.1 request carrying
X-Amzn-SageMaker-Enable-Explanations, plain enough for the worker's fast lane, is still answered in
Clarify's envelope (the fast lane and the hot path leave it to Flask), and the next plain request on
the same connection gets the plain answer."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from container.paths import MLPaths
from tests.e2e.helpers import serving
from tests.service.test_serving_app import _records

HEADER = "X-Amzn-SageMaker-Enable-Explanations"


@pytest.fixture(scope="module")
def port(gender_model: MLPaths, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with serving(gender_model.base, tmp_path_factory.mktemp("explain")) as port:
        yield port


def test_explanations_on_a_kept_alive_connection(port: int) -> None:
    body = json.dumps(_records(3))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        plain = conn.getresponse().read()
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json", HEADER: "`true`"})
        resp = conn.getresponse()
        explained = json.loads(resp.read())
        assert resp.status == 200 and resp.getheader("Content-Type", "").startswith("application/json")
        assert explained["predictions"]["data"] == plain.decode()
        assert len(explained["explanations"]["kernel_shap"]) == 3
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json", HEADER: "nope >"})
        bad = conn.getresponse()
        assert bad.status == 400 and HEADER in json.loads(bad.read())["error"]["message"]
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        assert conn.getresponse().read() == plain
    finally:
        conn.close()
