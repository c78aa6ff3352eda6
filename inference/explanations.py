"""Online explanations in SageMaker Clarify's response shape, asked for per request.

A request carrying ``X-Amzn-SageMaker-Enable-Explanations`` (a JMESPath expression, as Clarify's
``EnableExplanations``) is answered with Clarify's envelope: ``version``, ``predictions``
(``content_type`` and ``data``: the plain answer as it would have been sent), ``label_headers``
and ``explanations`` (``{}`` when no record is explained, else ``kernel_shap``: one entry per
record, ``null`` for a record the expression does not select, each a list of
``{"feature_header", "attributions": [{"attribution": [value per label]}]}``), plus ``method``
(what computed the attributions) and ``expected_value`` (the bias, one per label). The expression is
evaluated on each record's plain answer: its JSON object, or for a CSV answer the list of its
cells. The attributions themselves come from the model (``explain``); only selected records pay.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jmespath
from jmespath.exceptions import JMESPathError

from container.mediatypes import CSV
from inference.codecs import Inputs, Outputs
from inference.errors import BadInput

VERSION = "1.0"
MAX_EXPRESSION = 1024  # bytes: Clarify's own EnableExplanations holds at most 64 characters


class Attributions(Protocol):
    headers: list[str]
    values: Any  # n x len(headers)
    bias: float
    method: str


def _shown(expression: str) -> str:
    return json.dumps(expression[:80] + ("..." if len(expression) > 80 else ""), ensure_ascii=False)


def selector(expression: str) -> Callable[[Any], bool]:
    """Whether a record's plain answer is explained: the compiled expression, or a 400 naming it."""
    if len(expression.encode("utf-8", "surrogatepass")) > MAX_EXPRESSION:
        raise BadInput(f"X-Amzn-SageMaker-Enable-Explanations {_shown(expression)} is longer than "
                       f"{MAX_EXPRESSION} bytes")
    try:
        compiled = jmespath.compile(expression)
    except (JMESPathError, RecursionError, ValueError, TypeError) as exc:
        raise BadInput(f"X-Amzn-SageMaker-Enable-Explanations {_shown(expression)} is not a JMESPath "
                       f"expression: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                       ) from None

    def select(answer: Any) -> bool:
        try:
            found = compiled.search(answer)
        except Exception as exc:  # the client's expression failed on its answer: a 400, never a 500
            raise BadInput(f"X-Amzn-SageMaker-Enable-Explanations {_shown(expression)} failed: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if found is None or isinstance(found, bool):
            return bool(found)
        raise BadInput(f"X-Amzn-SageMaker-Enable-Explanations {_shown(expression)} must give true or "
                       f"false (or null) for a record; it gave {json.dumps(found)[:80]}")

    return select


def answers(outputs: Outputs, accept: str) -> list[Any]:
    """Each record's plain answer, as the expression reads it."""
    if accept == CSV:
        cols = [outputs.columns[c] for c in outputs.csv_columns]
        return [list(row) for row in zip(*cols, strict=True)]
    return outputs.rows()


def subset(inputs: Inputs, rows: Sequence[int]) -> Inputs:
    """The records at ``rows`` (a record's features do not depend on the others sent with it)."""
    if inputs.matrix is not None:
        return Inputs(matrix=inputs.matrix[list(rows)])
    records = inputs.records
    if records is not None:
        return Inputs(raw=[records[i] for i in rows])
    assert inputs.table is not None
    return Inputs(table=inputs.table.iloc[list(rows)].reset_index(drop=True))


def envelope(model: Any, inputs: Inputs, outputs: Outputs, accept: str, payload: bytes,
             content_type: str, select: Callable[[Any], bool]) -> bytes:
    """Clarify's response body for a request and its plain answer."""
    explain, label = _explaining(model, "X-Amzn-SageMaker-Enable-Explanations")
    chosen = [i for i, answer in enumerate(answers(outputs, accept)) if select(answer)]
    body: dict[str, Any] = {
        "version": VERSION,
        "predictions": {"content_type": content_type, "data": payload.decode("utf-8")},
        "label_headers": [label],
        "explanations": {},
    }
    if chosen:
        found: Attributions = explain(subset(inputs, chosen))
        per_record: list[Any] = [None] * outputs.n_rows
        for i, row in zip(chosen, found.values.tolist(), strict=True):
            per_record[i] = [{"feature_header": header, "attributions": [{"attribution": [value]}]}
                             for header, value in zip(found.headers, row, strict=True)]
        body["explanations"] = {"kernel_shap": per_record}
        body["expected_value"] = [found.bias]
        body["method"] = found.method
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def per_record(found: Attributions, label: str) -> list[dict[str, Any]]:
    """Each record's explanation as the portal records and answers it: the attributions by field,
    largest magnitude first, with the bias (``expected_value``) and the margin they add up to."""
    out = []
    for row in found.values.tolist():
        order = sorted(range(len(row)), key=lambda j: -abs(row[j]))
        out.append({"label": label, "method": found.method, "expected_value": found.bias,
                    "margin": found.bias + sum(row),
                    "attributions": [{"feature_header": found.headers[j], "attribution": row[j]}
                                     for j in order]})
    return out


def explainer(model: Any) -> Callable[[Inputs], list[dict[str, Any]]]:
    """``per_record`` of ``model``'s attributions for some inputs, or a 400 naming the model that
    gives none."""
    explain, label = _explaining(model, '"explain"')
    return lambda inputs: per_record(explain(inputs), label)


def _explaining(model: Any, asked_by: str) -> tuple[Callable[[Inputs], Any], str]:
    """The model's ``explain`` and the label it explains, or a 400 naming the model and what asked."""
    explain = getattr(model, "explain", None)
    if explain is None:
        raise BadInput(f"Model {model.name} gives no explanations; send the request without {asked_by}")
    return explain, str(getattr(model, "explained_label", "score"))
