"""The property run of the serving doors: 10,000+ generated requests (hypothesis) to /invocations,
the multi-model door and the portal's invoke, through the real app with a real model.

What is generated is what the decoders meet: JSON of any shape (deep, wide, huge numbers, NaN,
a byte-order mark), device records with wrong-typed fields, CSV with and without headers, JSON
Lines, random bytes, and every content type and Accept the doors know plus some they do not.
Each answer must be below 500, without a traceback, and a JSON error naming a code when it is 4xx.
The portal's own OpenAPI run (schemathesis) is tests/service/test_portal_schema.py.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from container.paths import MLPaths
from modelformat.gender.features import RAW_FIELDS
from tests import factories
from tests.service.test_serving_app import _app

REQUESTS = 10_000  # the acceptance figure: at least this many requests in the default run
REAL = json.loads(factories.devices(4, seed=9).drop(columns=["gender"]).to_json(orient="records"))

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                           max_leaves=12)
# What an auditor sent (issue 26): integers of hundreds of digits, lone surrogates, lists inside lists.
huge = st.integers(-(10**400), 10**400)
surrogates = st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3)
odd_scalars = st.one_of(scalars, huge, surrogates)
items = st.one_of(odd_scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=4), scalars, max_size=2))
field_values = st.one_of(odd_scalars, st.lists(scalars, max_size=4), st.lists(items, max_size=4),
                         st.sampled_from(["vivo", "1|2|3", "a b", ""]))
records = st.lists(st.dictionaries(st.sampled_from([*RAW_FIELDS, "events", "extra", "truth"]), field_values,
                                   max_size=len(RAW_FIELDS) + 2), max_size=4)
# Real records with one field swapped for a generated value: valid shape, odd content; sent alone and
# as a batch of more than the few-record path takes (FEW_RECORDS), so both paths meet each value.
one_mutated = st.builds(lambda n, key, value: {**REAL[n], key: value},
                        st.integers(0, len(REAL) - 1), st.sampled_from([*RAW_FIELDS, "events"]), field_values)
mutated = st.builds(lambda record, copies: [record] * copies, one_mutated, st.sampled_from([1, 1, 3, 9, 12]))
cells = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=",\n\r"),
                          max_size=12),
                  st.integers(-(10**6), 10**6).map(str), st.floats().map(str))
csv_text = st.builds(
    lambda header, rows: "\n".join(([",".join(header)] if header else []) + [",".join(r) for r in rows]) + "\n",
    st.one_of(st.none(), st.lists(st.sampled_from([*RAW_FIELDS, "label", "a"]), min_size=1, max_size=10)),
    st.lists(st.lists(cells, max_size=10), max_size=5))


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(_json),
    records.map(_json),
    mutated.map(_json),
    st.just(_json(REAL)),
    csv_text.map(str.encode),
    st.lists(json_values, max_size=4).map(lambda rows: b"\n".join(_json(r) for r in rows)),  # JSON Lines
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 6000).map(lambda digits: b'[{"device_model": ' + b"7" * digits + b"}]"),
).flatmap(lambda body: st.sampled_from([body, b"\xef\xbb\xbf" + body]))  # with a byte-order mark too

content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/json; charset=latin-1",
    "text/csv", "text/csv; charset=utf-8", "application/jsonlines", "application/x-ndjson",
    "text/plain", "application/x-npy", "image/png", "", "application/json; charset=nonsense", "*/*"])
accepts = st.sampled_from([None, "application/json", "text/csv", "*/*", "application/jsonlines",
                           "text/csv;q=0.5, application/json", "image/png", "", "application/*"])
doors = st.sampled_from(["/invocations", "/invocations", "/models/gender/invoke",
                         "/api/providers/prediction/invoke"])


@pytest.fixture(scope="module")
def app(gender_model: MLPaths, model_repository: Any) -> Flask:
    served = _app(gender_model, MLAPP_JOB_WORKER="false", MLAPP_MODEL_REPOSITORY=str(model_repository))
    assert served.extensions["model"].wait(30)
    client = served.test_client()
    load = client.post("/models", json={"model_name": "gender", "url": str(gender_model.model_dir)})
    assert load.status_code == 200, load.get_data(as_text=True)
    return served


@pytest.mark.slow
def test_generated_requests_never_get_a_5xx_or_a_traceback(app: Flask) -> None:
    client = app.test_client()
    statuses: Counter[int] = Counter()

    @given(door=doors, body=bodies, content_type=content_types, accept=accepts, wrap=st.booleans())
    @settings(max_examples=REQUESTS, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much, HealthCheck.large_base_example])
    def exercise(door: str, body: bytes, content_type: str, accept: str | None, wrap: bool) -> None:
        if door.startswith("/api/") and wrap:  # the portal's envelope around what was generated
            body = b'{"model": "gender", "input": ' + body + b"}"
        headers = {"Accept": accept} if accept is not None else {}
        resp = client.post(door, data=body, content_type=content_type, headers=headers)
        statuses[resp.status_code] += 1
        text = resp.get_data(as_text=True)
        assert resp.status_code < 500, (resp.status_code, text[:300])
        assert "Traceback" not in text
        if resp.status_code >= 400:
            assert resp.get_json()["error"]["code"], text[:300]

    exercise()
    total = sum(statuses.values())
    print(f"property run: {total} requests, statuses {dict(sorted(statuses.items()))}")
    assert total >= REQUESTS
    assert statuses[200] >= REQUESTS // 50  # valid requests were generated and answered, not only errors


@pytest.mark.slow
def test_a_record_gets_the_same_answer_alone_and_in_a_batch(app: Flask) -> None:
    """The few-record path (up to FEW_RECORDS) and the general one read every record alike: the same
    status, and the same prediction for each copy."""
    client = app.test_client()
    compared: Counter[int] = Counter()

    @given(record=one_mutated, copies=st.sampled_from([2, 9, 12]))
    @settings(max_examples=REQUESTS // 10, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    def exercise(record: dict[str, Any], copies: int) -> None:
        alone = client.post("/invocations", data=_json([record]), content_type="application/json")
        batch = client.post("/invocations", data=_json([record] * copies), content_type="application/json")
        assert alone.status_code == batch.status_code, (record, alone.get_data(as_text=True)[:200],
                                                        batch.get_data(as_text=True)[:200])
        compared[alone.status_code] += 1
        if alone.status_code == 200:
            one = alone.get_json()["predictions"][0]
            assert all(row == one for row in batch.get_json()["predictions"]), record
        else:
            assert alone.get_json()["error"]["message"] == batch.get_json()["error"]["message"]

    exercise()
    print(f"alone vs batch: {dict(compared)}")
    assert compared[200] >= REQUESTS // 100 and sum(compared[s] for s in compared if s >= 400) >= REQUESTS // 100
