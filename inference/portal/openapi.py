"""The portal's OpenAPI 3.0 document, served at /api/openapi.json and used by the tests."""

from __future__ import annotations

from typing import Any

from inference.portal.status import Status

STATUSES = [s.value for s in Status]

_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ID = {"name": "prediction_id", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERROR for c in codes}


def _ok(schema: str, code: int = 200) -> dict[str, Any]:
    return {str(code): {"description": "OK", "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}}}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def spec() -> dict[str, Any]:
    model_ref = {"oneOf": [{"type": "string", "minLength": 1}, {
        "type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1}, "version": {"type": "string"}}}]}
    records = {"type": "array", "minItems": 1, "items": {"type": "object"}}
    request_id = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[ -~]+$",
                  "description": "a client-chosen id that makes a retry of this call return the first "
                                 "call's answer instead of a second prediction (or send X-Request-Id)"}
    header_id = {"name": "X-Request-Id", "in": "header", "required": False, "schema": request_id}
    explain = {"type": "boolean", "default": False,
               "description": "record (and answer) each record's explanation: attributions by raw field"}
    location = {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$",
                "description": "A local path, file:// or s3:// URI under the allowed roots and schemes"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "MLapp prediction portal", "version": "1.0.0",
                 "description": "Batch and online predictions through one door, tracked and recorded."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}}},
                    "request_id": {"type": "string", "nullable": True}}},
                "CreateRequest": {"type": "object", "required": ["model", "input"], "properties": {
                    "model": model_ref,
                    "input": {"oneOf": [
                        records,
                        {"type": "object", "required": ["records"], "properties": {"records": records}},
                        {"type": "object", "required": ["location"], "not": {"required": ["records"]},
                         "properties": {"location": location, "format": {
                             "type": "string", "enum": ["csv", "jsonl", "parquet"]}}}]},
                    "output_location": location,
                    "engine": {"type": "string", "enum": ["local", "spark"], "default": "local",
                               "description": "spark: a job submitted to MLAPP_SPARK_MASTER (a location in, Parquet out)"},
                    "explain": explain, "request_id": request_id}},
                "InvokeRequest": {"type": "object", "required": ["model", "input"], "properties": {
                    "model": model_ref, "input": records, "explain": explain, "request_id": request_id,
                    "compare_with": {"oneOf": [
                        {"type": "string", "description": "another version of the same model"},
                        {"type": "object", "required": ["model"], "properties": {"model": model_ref}}]}}},
                "IdRequest": {"type": "object", "required": ["prediction_id"], "properties": {
                    "prediction_id": {"type": "string", "minLength": 1}}},
                "Prediction": {"type": "object", "required": ["prediction_id", "status", "model"], "properties": {
                    "prediction_id": {"type": "string"},
                    "status": {"type": "string", "enum": STATUSES},
                    "kind": {"type": "string"}, "model": {"type": "object"},
                    "engine": {"type": "string", "enum": ["local", "spark"]},
                    "rows_total": {"type": "integer", "nullable": True},
                    "rows_done": {"type": "integer", "nullable": True},
                    "error": {"type": "string", "nullable": True}}},
                "Explanation": {"type": "object", "required": [
                    "label", "method", "expected_value", "margin", "attributions"], "properties": {
                    "label": {"type": "string", "description": "the class whose log-odds are explained"},
                    "method": {"type": "string"}, "expected_value": {"type": "number"},
                    "margin": {"type": "number", "description": "expected_value + the attributions' sum"},
                    "attributions": {"type": "array", "items": {
                        "type": "object", "required": ["feature_header", "attribution"], "properties": {
                            "feature_header": {"type": "string"}, "attribution": {"type": "number"}}}}}},
                "InvokeResponse": {"type": "object", "required": ["prediction_id", "predictions"], "properties": {
                    "prediction_id": {"type": "string"}, "predictions": {"type": "array", "items": {
                        "type": "object", "properties": {
                            "explanation": {"$ref": "#/components/schemas/Explanation"}}}},
                    "shadow": {"type": "object"}, "comparison": {"type": "object"}}},
                "PredictionList": {"type": "object", "required": ["predictions"], "properties": {
                    "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}}},
                "Comparison": {"type": "object", "required": ["a", "b", "rows_compared"], "properties": {
                    "a": {"type": "object"}, "b": {"type": "object"}, "rows_compared": {"type": "integer"},
                    "agreement_rate": {"type": "number"}, "score_delta": {"type": "object"}}},
                "ModelList": {"type": "object", "required": ["models"], "properties": {
                    "models": {"type": "array", "items": {"type": "object"}}}},
            },
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
        "paths": {
            "/api/providers/prediction/create": {"post": {
                "summary": "Submit a batch prediction job (202, runs in the background)",
                "parameters": [header_id], "requestBody": _body("CreateRequest"),
                "responses": {**_ok("Prediction", 202), **_errors(400, 401, 403, 404, 409, 415)}}},
            "/api/providers/prediction/invoke": {"post": {
                "summary": "Online prediction, recorded; optional shadow comparison",
                "parameters": [header_id], "requestBody": _body("InvokeRequest"),
                "responses": {**_ok("InvokeResponse"), **_errors(400, 401, 404, 409, 415)}}},
            "/api/providers/prediction/check": {"get": {
                "summary": "Status, timings, row counts and (paginated) results of a prediction",
                "parameters": [_ID,
                               {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000000000}},
                               {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                          "maximum": 10000}}],
                "responses": {**_ok("Prediction"), **_errors(400, 401, 404)}}},
            "/api/providers/prediction/list": {"get": {
                "summary": "Predictions, newest first, filtered by status, model or kind",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUSES}},
                    {"name": "model", "in": "query", "schema": {"type": "string", "minLength": 1}},
                    {"name": "kind", "in": "query", "schema": {"type": "string", "enum": [
                        "batch", "online", "capture"]}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000000000}}],
                "responses": {**_ok("PredictionList"), **_errors(400, 401)}}},
            "/api/providers/prediction/cancel": {"post": {
                "summary": "Cancel a QUEUED or RUNNING job (409 otherwise)", "requestBody": _body("IdRequest"),
                "responses": {**_ok("Prediction"), **_errors(400, 401, 404, 409, 415)}}},
            "/api/providers/prediction/retry": {"post": {
                "summary": "Queue a FAILED or CANCELLED job again (409 otherwise)", "requestBody": _body("IdRequest"),
                "responses": {**_ok("Prediction"), **_errors(400, 401, 404, 409, 415)}}},
            "/api/providers/prediction/compare": {"get": {
                "summary": "Compare two recorded predictions row by row",
                "parameters": [{"name": "a", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1}},
                               {"name": "b", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1}}],
                "responses": {**_ok("Comparison"), **_errors(400, 401, 404)}}},
            "/api/models": {"get": {"summary": "Models and versions in the repository",
                                    "responses": {**_ok("ModelList"), **_errors(401)}}},
        },
    }
