"""Reading portal requests: parameters, model references, inline records, input locations.

Plain values in, plain values out (no Flask), each problem a BadInput naming the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from inference.errors import BadInput, NotAvailable
from inference.portal import sources
from inference.portal.config import PortalConfig
from inference.spark.submit import pyspark_installed

ENGINES = ("local", "spark")


def whole_number(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"'{key}' must be a whole number") from None
    if isinstance(value, float) and not value.is_integer():
        raise BadInput(f"'{key}' must be a whole number")
    if not low <= number <= high:
        raise BadInput(f"'{key}' must be between {low} and {high}")
    return number


def flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise BadInput(f"'{key}' must be true or false")
    return value


def idempotency(call: str, body: dict[str, Any], header: str | None) -> tuple[str, str] | None:
    """A client-chosen request id (the body's "request_id", else the X-Request-Id header) scoped by
    ``call``, and the hash of the request it names; None when the client chose none."""
    key = body.get("request_id", header)
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= 128 or not key.isprintable():
        raise BadInput("'request_id' (or X-Request-Id) must be 1 to 128 printable characters")
    request = {k: v for k, v in body.items() if k != "request_id"}
    digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
    return f"{call}:{key}", digest


def prediction_id(data: dict[str, Any], key: str = "prediction_id") -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise BadInput(f"'{key}' is required (a prediction id string)")
    return value


def model_ref(body: dict[str, Any]) -> tuple[str, str | None]:
    model = body.get("model")
    if isinstance(model, str):
        return model, body.get("version")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"]:
        raise BadInput("'model' must be a model name or {\"name\": ..., \"version\": ...}")
    version = model.get("version")
    if version is not None and not isinstance(version, str):
        raise BadInput("'model.version' must be a string")
    return model["name"], version


def shadow_ref(compare_with: Any, name: str) -> tuple[str, str | None]:
    """``compare_with``: another version of the same model, or a model reference of its own."""
    if isinstance(compare_with, dict):
        return model_ref(compare_with)
    return model_ref({"model": {"name": name, "version": compare_with}})


def inline_records(records: Any, config: PortalConfig) -> list[dict[str, Any]]:
    if isinstance(records, dict) and "records" in records:
        records = records["records"]
    if not isinstance(records, list) or not records:
        raise BadInput("'input' must be a non-empty list of records (objects)")
    if len(records) > config.max_inline_rows:
        raise BadInput(f"At most {config.max_inline_rows} inline records per request; "
                       "use a location for larger inputs")
    if not all(isinstance(r, dict) for r in records):
        raise BadInput("Every inline record must be a JSON object")
    return records


def input_spec(value: Any, config: PortalConfig) -> dict[str, Any]:
    if isinstance(value, list):
        return {"records": inline_records(value, config)}
    if not isinstance(value, dict):
        raise BadInput("'input' must be a list of records or {\"location\": ..., \"format\": ...}")
    if "records" in value:
        return {"records": inline_records(value["records"], config)}
    location = value.get("location")
    kind, where = sources.parse_location(location, config.allowed_schemes, config.allowed_roots)
    fmt = sources.detect_format(where, value.get("format"))
    if kind == "file" and not Path(where).is_file():
        raise BadInput(f"Input file {where} does not exist")
    return {"location": location, "kind": kind, "where": where, "format": fmt}


def output_location(value: Any, config: PortalConfig) -> str | None:
    if value is None:
        return None
    _, where = sources.parse_location(str(value), config.allowed_schemes, config.allowed_roots)
    return where


def engine(body: dict[str, Any], spec: dict[str, Any], output: str | None, config: PortalConfig) -> str:
    """'local' (the serve processes' runner) or 'spark' (a job submitted to MLAPP_SPARK_MASTER),
    which reads a location and writes Parquet to ``output_location``."""
    name = body.get("engine", "local")
    if name not in ENGINES:
        raise BadInput(f"engine must be {' or '.join(ENGINES)}")
    if name == "spark":
        if not config.spark_master:
            raise NotAvailable("The spark engine is off: set MLAPP_SPARK_MASTER to a Spark master")
        if not pyspark_installed():
            raise NotAvailable("pyspark is not installed: the spark engine needs pyspark and a Java "
                               "runtime in the portal's environment (README, Spark)")
        if "records" in spec:
            raise BadInput("engine 'spark' reads its input from a location, not inline records")
        if output is None:
            raise BadInput("engine 'spark' writes Parquet: 'output_location' is required")
    return str(name)


def list_filters(data: dict[str, Any], statuses: tuple[str, ...], kinds: tuple[str, ...]
                 ) -> tuple[str | None, str | None, str | None]:
    status, model, kind = data.get("status"), data.get("model"), data.get("kind")
    if status is not None and status not in statuses:
        raise BadInput(f"status must be one of {', '.join(statuses)}")
    if kind is not None and kind not in kinds:
        raise BadInput(f"kind must be one of {', '.join(kinds)}")
    if model is not None and not (isinstance(model, str) and model):
        raise BadInput("model must be a non-empty model name")
    return status, model, kind
