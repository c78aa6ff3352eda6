"""A CSV body of many short lines against a model with the compiled forest is a 400 naming the
problem, for little memory: the C parse allocated rows x features x 4 bytes before reading a field
(issue 26: 2.7 GB for this 228-feature gender model, a MemoryError, so a 500, against a 45,000-feature
one); it now refuses a body too short for its rows, and the general decoder answers."""

from __future__ import annotations

import tracemalloc

import pytest

from container.paths import MLPaths
from tests.service.test_hostile_input import _error
from tests.service.test_serving_app import _app


@pytest.mark.parametrize("model", ["gender_model", "numeric_model"])
def test_three_million_one_letter_lines_are_a_400(model: str, request: pytest.FixtureRequest) -> None:
    paths: MLPaths = request.getfixturevalue(model)
    client = _app(paths, MLAPP_JOB_WORKER="false").test_client()
    body = b"a\n" * 3_000_000
    for accept in ("text/csv", "application/json"):
        tracemalloc.start()  # counts PyMem_Malloc, which the C parse allocates with
        try:
            resp = client.post("/invocations", data=body, content_type="text/csv", headers={"Accept": accept})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        message = _error(resp)
        assert "device fields" in message or "Missing feature column" in message, message
        assert peak < 50 * len(body), f"{peak / len(body):.0f} bytes per body byte"
