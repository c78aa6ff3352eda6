"""One error tree for the HTTP side; one handler (in app.py) turns it into JSON responses.

Everything a client can cause is a ServiceError with a 4xx status and a message naming
the problem; anything else is a 500 whose traceback stays in the logs.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def body(self, request_id: str | None) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error, "request_id": request_id}


# Each class below is one row of the status table (an HTTP status and a stable code), so they share
# one shape on purpose (`duplicates` lists them); a table of (name, status, code) would hide the names
# from readers, mypy and `except` clauses.
class BadInput(ServiceError):
    status = 400
    code = "bad_input"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotAvailable(Forbidden):
    """What this deployment does not offer (the spark engine without pyspark or a master): refused
    like a scheme outside MLAPP_ALLOWED_SCHEMES, with a code of its own (never a 5xx: the portal
    answers none for what a request asks)."""

    code = "not_available"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ServiceError):
    status = 405
    code = "method_not_allowed"


class NotAcceptable(ServiceError):
    status = 406
    code = "not_acceptable"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


class ModelNotReady(ServiceError):
    status = 503
    code = "model_not_ready"



class StoreUnavailable(ServiceError):
    status = 503
    code = "store_unavailable"
