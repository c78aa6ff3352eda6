"""Hostile and odd request bodies get a 4xx JSON naming the problem: never a 500, never a
traceback, never an empty success for a body the model cannot read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from container.paths import MLPaths
from tests import factories
from tests.service.test_serving_app import _app

DOORS = ["/invocations", "/api/providers/prediction/invoke"]


@pytest.fixture(scope="module")
def client(gender_model: MLPaths) -> FlaskClient:
    return _app(gender_model, MLAPP_JOB_WORKER="false").test_client()


@pytest.fixture(scope="module")
def numeric_client(numeric_model: MLPaths) -> FlaskClient:
    return _app(numeric_model, MLAPP_JOB_WORKER="false").test_client()


def _error(resp: Any, status: int = 400) -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert "Traceback" not in resp.get_data(as_text=True)
    return str(resp.get_json()["error"]["message"])


def _body(door: str, inner: str) -> str:
    return inner if door == "/invocations" else '{"model": "gender", "input": ' + inner + "}"


@pytest.mark.parametrize("door", DOORS)
def test_json_nested_100000_levels_deep_is_a_400(client: FlaskClient, door: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    message = _error(client.post(door, data=_body(door, deep), content_type="application/json"))
    assert "nests arrays or objects too deeply" in message


@pytest.mark.parametrize("door", DOORS)
def test_an_integer_of_5000_digits_is_a_400(client: FlaskClient, door: str) -> None:
    huge = '[{"phone_brand": "vivo", "device_model": ' + "9" * 5000 + "}]"
    message = _error(client.post(door, data=_body(door, huge), content_type="application/json"))
    assert "number too long" in message and "4300 digits" in message


def test_json_lines_with_a_deep_line_is_a_400(client: FlaskClient) -> None:
    body = '{"phone_brand": "vivo"}\n' + "[" * 50_000 + "]" * 50_000 + "\n"
    assert "line 2 nests" in _error(client.post("/invocations", data=body, content_type="application/jsonlines"))


def test_a_csv_header_of_unknown_columns_names_the_expected_ones(numeric_client: FlaskClient,
                                                                 client: FlaskClient) -> None:
    message = _error(numeric_client.post("/invocations", data="a,b,c\n", content_type="text/csv"))
    assert "Missing feature column(s): f0, f1, f2, f3, f4, f5" in message
    assert "Records need device fields" in _error(client.post("/invocations", data="a,b,c\n",
                                                              content_type="text/csv"))
    # a header the model knows, without rows, is still an empty answer
    assert numeric_client.post("/invocations", data="f0,f1,f2,f3,f4,f5\n", content_type="text/csv").status_code == 204
    assert client.post("/invocations", data="", content_type="text/csv").status_code == 204


@pytest.mark.parametrize("door", DOORS)
def test_a_json_body_with_a_utf8_byte_order_mark_is_read(client: FlaskClient, door: str) -> None:
    records = json.loads(factories.devices(2, seed=3).drop(columns=["gender"]).to_json(orient="records"))
    body = b"\xef\xbb\xbf" + _body(door, json.dumps(records)).encode()
    resp = client.post(door, data=body, content_type="application/json; charset=utf-8")
    assert resp.status_code == 200 and len(resp.get_json()["predictions"]) == 2


def test_a_csv_body_with_a_byte_order_mark_keeps_its_first_column_name(numeric_client: FlaskClient) -> None:
    body = "\ufefff0,f1,f2,f3,f4,f5\n1,2,3,4,5,6\n".encode()
    resp = numeric_client.post("/invocations", data=body, content_type="text/csv")
    assert resp.status_code == 200 and len(resp.get_json()["predictions"]) == 1


@pytest.mark.parametrize(("body", "content_type"), [
    ("1e39,1,2,3,4,5\n", "text/csv"),                      # the property run's find: a float32 overflow
    ("f0,f1,f2,f3,f4,f5\n1,2,3,4,5,-1e300\n", "text/csv"),  # through the header (pandas) path
    ("[[1, 2, 3, 4, 5, 1e39]]", "application/json"),
])
def test_a_number_beyond_float32_is_a_400(numeric_client: FlaskClient, body: str, content_type: str) -> None:
    message = _error(numeric_client.post("/invocations", data=body, content_type=content_type))
    assert "beyond the range of 32-bit floats" in message
