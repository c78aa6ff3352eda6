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


# ----------------------------------------------------------------- device records (issue 26)
def _record(**fields: Any) -> dict[str, Any]:
    record = json.loads(factories.devices(1, seed=3).drop(columns=["gender"]).to_json(orient="records"))[0]
    record.update(event_lats=[31.2, 31.3], event_lons=[121.4, 121.5],
                  event_timestamps=["2016-05-01 17:02:47", "2016-05-02 09:10:11"])
    record.update(fields)
    return dict(record)


def _records_body(record: dict[str, Any], n: int, literal: str | None = None) -> str:
    """n copies of record; the string "@" (a placeholder) becomes ``literal`` as written."""
    text = json.dumps([record] * n)
    return text if literal is None else text.replace('"@"', literal)


# Both the few-record path (1-8 records) and the general one (9 and more) must say the same.
SIZES = [1, 8, 9, 40]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(("field", "literal", "words"), [
    ("event_lats", "9" * 400, "event_lats"),          # float() raises OverflowError
    ("event_lons", "-" + "9" * 320, "event_lons"),
    ("event_lats", "1e400", "event_lats"),             # json reads inf
    ("event_lats", "Infinity", "event_lats"),
    ("event_lons", "-Infinity", "event_lons"),
    ("event_lats", "1e39", "event_lats"),              # beyond float32, as for a numeric row
])
def test_a_coordinate_that_is_not_a_finite_float32_is_a_400(client: FlaskClient, door: str, n: int,
                                                           field: str, literal: str, words: str) -> None:
    record = _record(**{field: ["@", 31.3] if field == "event_lats" else ["@", 121.5]})
    message = _error(client.post(door, data=_body(door, _records_body(record, n, literal)),
                                 content_type="application/json"))
    assert words in message and "finite" in message


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("door", DOORS)
def test_nan_in_a_coordinate_list_is_a_missing_point_on_every_path(client: FlaskClient, door: str,
                                                                  n: int) -> None:
    with_nan = _records_body(_record(event_lats=["@", 31.3]), n, "NaN")
    with_null = _records_body(_record(event_lats=[None, 31.3]), n)
    answers = [client.post(door, data=_body(door, body), content_type="application/json")
               for body in (with_nan, with_null)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].get_json()["predictions"] == answers[1].get_json()["predictions"]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(("field", "value"), [
    ("installed_apps", [[]]),
    ("installed_apps", ["app_1", ["app_2"]]),
    ("active_apps", [{"name": "app_1"}]),
    ("app_categories", [["Games"]]),
    ("event_timestamps", [["2016-05-01 17:02:47"]]),
    ("event_lats", [[31.2], 31.3]),
    ("event_lons", [{"lon": 1.0}, 121.5]),
])
def test_a_list_field_holding_lists_or_objects_is_a_400(client: FlaskClient, door: str, n: int,
                                                       field: str, value: Any) -> None:
    body = _records_body(_record(**{field: value}), n)
    message = _error(client.post(door, data=_body(door, body), content_type="application/json"))
    assert field in message and "Record 1" in message


@pytest.mark.parametrize("n", SIZES)
def test_answers_are_the_same_on_both_paths_for_odd_but_valid_records(client: FlaskClient, n: int) -> None:
    odd = [_record(), _record(installed_apps=[1, 2, "app_3", None, True]), _record(event_lats=[31.2, None]),
           _record(phone_brand=None, device_model=7), _record(event_lats=[], event_lons=[]),
           _record(installed_apps="app_1|app_2", app_categories="Games"), _record(device_id=2**60),
           _record(event_lats=[10**20, 31.3]), _record(event_lats=[31.2], event_lons=[121.4, 121.5]),
           _record(event_lats=[31.2, "x"]), _record(event_timestamps=[10**400, "2016-05-01 17:02:47"]),
           _record(event_timestamps=[-(10**30), 1462121000])]
    alone = [client.post("/invocations", json=[record]).get_json()["predictions"][0] for record in odd]
    for record, one in zip(odd, alone, strict=True):
        many = client.post("/invocations", json=[record] * n).get_json()["predictions"]
        assert all(row == one for row in many), record
    # a record's answer does not depend on the records sent with it
    mixed = client.post("/invocations", json=(odd * n)[:max(n, len(odd))]).get_json()["predictions"]
    assert mixed == (alone * n)[:len(mixed)]


@pytest.mark.parametrize(("body", "content_type"), [
    ("1,2,3,4,5,inf\n", "text/csv"),
    ("1,2,3,4,5,1e400\n", "text/csv"),
    ("1,2,3,4,5,-Infinity\n" * 20, "text/csv"),
    ("f0,f1,f2,f3,f4,f5\n1,2,3,4,5,inf\n", "text/csv"),
    ("[[1, 2, 3, 4, 5, Infinity]]", "application/json"),
    ("[[1, 2, 3, 4, 5, 1e400]]", "application/json"),
    ("[[1, 2, 3, 4, 5, " + "9" * 400 + "]]", "application/json"),
    ('[{"f0": 1, "f1": 2, "f2": 3, "f3": 4, "f4": 5, "f5": -Infinity}]', "application/json"),
])
def test_a_number_that_is_not_finite_is_a_400_in_a_numeric_row(numeric_client: FlaskClient, body: str,
                                                              content_type: str) -> None:
    message = _error(numeric_client.post("/invocations", data=body, content_type=content_type))
    assert "finite" in message or "beyond the range of 32-bit floats" in message


@pytest.mark.parametrize(("body", "content_type"), [
    ("1,2,3,4,5,nan\n", "text/csv"), ("1,2,3,4,5,\n", "text/csv"), ("[[1, 2, 3, 4, 5, NaN]]", "application/json"),
    ("[[1, 2, 3, 4, 5, null]]", "application/json"),
])
def test_nan_and_empty_are_missing_in_a_numeric_row(numeric_client: FlaskClient, body: str,
                                                   content_type: str) -> None:
    resp = numeric_client.post("/invocations", data=body, content_type=content_type)
    assert resp.status_code == 200, resp.get_data(as_text=True)


# ----------------------------------------------------------------- text that is not Unicode
SURROGATES = ['"\\ud800"', '"a\\udfffb"', '"\\ud83d x"']


@pytest.mark.parametrize("literal", SURROGATES)
@pytest.mark.parametrize("field", ["device_id", "phone_brand", "installed_apps"])
@pytest.mark.parametrize("n", [1, 9])
@pytest.mark.parametrize("door", DOORS)
def test_a_lone_surrogate_escape_is_a_400(client: FlaskClient, door: str, n: int, field: str,
                                         literal: str) -> None:
    record = _record(**{field: ["@"] if field == "installed_apps" else "@"})
    message = _error(client.post(door, data=_body(door, _records_body(record, n, literal)),
                                 content_type="application/json"))
    assert "surrogate" in message


def test_a_surrogate_pair_escape_is_text(client: FlaskClient) -> None:
    body = _records_body(_record(phone_brand="@"), 1, '"\\ud83d\\ude00"')
    assert client.post("/invocations", data=body, content_type="application/json").status_code == 200


@pytest.mark.parametrize(("path", "body"), [
    ("/api/providers/prediction/check", '{"prediction_id": "\\ud800"}'),
    ("/api/providers/prediction/create", '{"model": "gender", "input": {"location": "/tmp/\\ud800.csv"}}'),
    ("/api/providers/prediction/create", '{"model": "gender", "input": [{"phone_brand": "\\udc00"}]}'),
])
def test_the_portal_refuses_lone_surrogates_in_any_field(client: FlaskClient, path: str, body: str) -> None:
    assert "surrogate" in _error(client.post(path, data=body, content_type="application/json"))


def test_the_portal_refuses_raw_cesu_bytes(client: FlaskClient) -> None:
    body = b'{"model": "gender", "input": [{"phone_brand": "\xed\xa0\x80"}]}'
    message = _error(client.post("/api/providers/prediction/invoke", data=body, content_type="application/json"))
    assert "UTF-8" in message


# ----------------------------------------------------------------- empty answers
def test_an_empty_json_array_is_a_204_without_a_content_type(client: FlaskClient) -> None:
    resp = client.post("/invocations", data="[]", content_type="application/json")
    assert resp.status_code == 204 and resp.get_data() == b""
    assert "Content-Type" not in resp.headers


# ----------------------------------------------------------------- ids keep their precision (issue 27)
def test_a_device_id_beyond_2_53_is_the_same_string_from_csv_and_json(client: FlaskClient) -> None:
    from training.gender import synth

    devices = factories.devices(3, seed=11).drop(columns=["gender"])
    devices["device_id"] = ["-6401643145415154744", "9223372036854775807", "42"]
    records = json.loads(devices.to_json(orient="records"))
    as_numbers = json.loads(json.dumps(records).replace('"device_id": "-6401643145415154744"', '"device_id": -6401643145415154744')
                            .replace('"device_id": "9223372036854775807"', '"device_id": 9223372036854775807')
                            .replace('"device_id": "42"', '"device_id": 42'))
    csv_body = synth.to_csv_frame(devices).to_csv(index=False)
    answers = {
        "json strings": client.post("/invocations", json=records),
        "json numbers": client.post("/invocations", json=as_numbers),
        "json numbers, many": client.post("/invocations", json=as_numbers * 4),
        "csv": client.post("/invocations", data=csv_body, content_type="text/csv",
                           headers={"Accept": "application/json"}),
    }
    for name, resp in answers.items():
        ids = [p["device_id"] for p in resp.get_json()["predictions"]][:3]
        if name == "json strings":
            assert ids == ["-6401643145415154744", "9223372036854775807", "42"]
        else:  # numbers that fit a double stay numbers; the others come back exact, as strings
            assert ids == ["-6401643145415154744", "9223372036854775807", 42], name
