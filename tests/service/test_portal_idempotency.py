"""Portal create and invoke under a client-chosen request id: a retry answers what the first call
recorded instead of making a second prediction; the same id on another request is a 409."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.service.test_portal import drain, err, jobs, records

API = "/api/providers/prediction"


def _count(app: Flask, kind: str) -> int:
    return len(jobs(app).store.list_predictions(kind=kind, limit=1000))


def test_a_retried_create_queues_one_job(app: Flask, client: FlaskClient) -> None:
    body = {"model": "gender", "input": records(30)}
    first = client.post(f"{API}/create", json=body, headers={"X-Request-Id": "job-7"})
    again = client.post(f"{API}/create", json=body, headers={"X-Request-Id": "job-7"})
    assert first.status_code == again.status_code == 202
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["prediction_id"] == first.get_json()["prediction_id"]
    assert _count(app, "batch") == 1
    drain(app)
    # after it ran, a retry still names the same job (now SUCCEEDED), and queues nothing
    late = client.post(f"{API}/create", json=body, headers={"X-Request-Id": "job-7"}).get_json()
    assert late["prediction_id"] == first.get_json()["prediction_id"] and late["status"] == "SUCCEEDED"
    assert _count(app, "batch") == 1
    # another id is another job; no id is a new job each time
    client.post(f"{API}/create", json=body, headers={"X-Request-Id": "job-8"})
    client.post(f"{API}/create", json=body)
    client.post(f"{API}/create", json=body)
    assert _count(app, "batch") == 4


def test_a_retried_invoke_answers_the_first_answer(app: Flask, client: FlaskClient) -> None:
    body = {"model": "gender", "input": records(5), "request_id": "call-1", "explain": True}
    first = client.post(f"{API}/invoke", json=body)
    again = client.post(f"{API}/invoke", json=body)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json()  # byte for byte the same JSON value
    assert _count(app, "online") == 1
    # the header names the id too, scoped by the call: the same id for a create is another job
    client.post(f"{API}/create", json={"model": "gender", "input": records(5)}, headers={"X-Request-Id": "call-1"})
    assert _count(app, "batch") == 1


def test_a_retried_shadow_invoke_keeps_both_predictions_and_their_comparison(app: Flask,
                                                                              client: FlaskClient) -> None:
    body = {"model": {"name": "gender", "version": "v1"}, "input": records(8), "compare_with": "v2"}
    headers = {"X-Request-Id": "shadowed"}
    first = client.post(f"{API}/invoke", json=body, headers=headers).get_json()
    again = client.post(f"{API}/invoke", json=body, headers=headers).get_json()
    assert again == first
    assert _count(app, "online") == 2  # the main prediction and its shadow, once each


def test_the_same_id_on_another_request_is_a_conflict(client: FlaskClient) -> None:
    client.post(f"{API}/invoke", json={"model": "gender", "input": records(2)}, headers={"X-Request-Id": "r"})
    other = client.post(f"{API}/invoke", json={"model": "gender", "input": records(3)},
                        headers={"X-Request-Id": "r"})
    assert other.status_code == 409
    assert "Request id 'r' was used for a different request" in err(other)


@pytest.mark.parametrize("value", ["", "x" * 129, 5, ["a"], "tab\there"])
def test_a_bad_request_id_is_named(client: FlaskClient, value: Any) -> None:
    resp = client.post(f"{API}/invoke", json={"model": "gender", "input": records(2), "request_id": value})
    assert resp.status_code == 400
    assert "'request_id' (or X-Request-Id) must be 1 to 128 printable characters" in err(resp)


def test_a_failed_call_is_not_kept_under_its_id(app: Flask, client: FlaskClient) -> None:
    """A call that failed answered no prediction: its retry runs again (and fails the same way for the
    same bad input), instead of replaying an error."""
    bad = {"model": "gender", "input": [{"foo": 1}], "request_id": "bad"}
    assert client.post(f"{API}/invoke", json=bad).status_code == 400
    assert client.post(f"{API}/invoke", json=bad).status_code == 400
    good = {"model": "gender", "input": records(1), "request_id": "bad"}
    assert client.post(f"{API}/invoke", json=good).status_code == 200


def test_concurrent_retries_record_one_prediction_and_give_one_answer(app: Flask) -> None:
    """Two calls with one id at once (nginx retrying while the first host still works): both get the
    answer that was recorded, one prediction is kept."""
    body = {"model": "gender", "input": records(20), "request_id": "race"}
    answers: list[tuple[int, Any]] = []
    start = threading.Barrier(4)

    def call() -> None:
        start.wait()
        resp = app.test_client().post(f"{API}/invoke", json=body)
        answers.append((resp.status_code, resp.get_json()))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [status for status, _ in answers] == [200] * 4, answers
    assert all(a == answers[0] for a in answers)
    assert _count(app, "online") == 1
