"""SageMaker hosting over HTTP: /ping, /invocations, /execution-parameters, /metrics and the
multi-model API (/models). Routes only translate between Flask and the data plane.

Per-request hooks (request id, access log, Prometheus samples) and the one error handler
live here too, built from exchange.py's pieces (which the speed layer's hot path shares):
every ServiceError becomes its JSON body, anything unexpected a 500 whose traceback
stays in the log. Plug-ins (the portal) receive the ``Hosting`` object and add
their own routes, a recorder and metrics; this module imports none of them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, Response, g, request
from prometheus_client.registry import Collector
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from container.logs import request_id_var
from container.settings import Settings
from inference import codecs, metrics
from inference.dataplane import Answer, DataPlane, Invocation
from inference.errors import BadInput, MethodNotAllowed, NotFound, ServiceError
from inference.exchange import (
    CUSTOM_ATTRIBUTES,
    ENABLE_EXPLANATIONS,
    HEALTHY,
    REQUEST_ID_HEADERS,
    TARGET_MODEL,
    discard_body,
    error_parts,
    finished,
    request_id,
    too_large,
)
from inference.registry import ModelRegistry

log = logging.getLogger("inference.app")


@dataclass
class Hosting:
    """What the hosting core hands to plug-ins."""

    settings: Settings
    registry: ModelRegistry
    dataplane: DataPlane
    collectors: list[Collector] = field(default_factory=list)  # extra samples for GET /metrics


Plugin = Callable[[Flask, Hosting], None]


def json_response(body: bytes | str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, mimetype="application/json", headers=headers)


def answer_response(answer: Answer) -> Response:
    g.model_version = answer.model.version
    if answer.status == 204:
        empty = Response(status=204)
        del empty.headers["Content-Type"]  # no content, so no type (Flask's default says text/html)
        return empty
    return Response(answer.body, status=answer.status, mimetype=answer.content_type)


def create_hosting_app(hosting: Hosting) -> Flask:
    settings, registry, dataplane = hosting.settings, hosting.registry, hosting.dataplane
    app = Flask("inference")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes
    app.extensions["settings"] = settings
    app.extensions["hosting"] = hosting
    app.extensions["model"] = registry.default
    _install_hooks(app, settings)

    @app.get("/ping")
    def ping() -> Response:
        slot = registry.default
        if slot.state == "ready":
            return json_response(HEALTHY)
        return json_response(json.dumps({"status": slot.state, "reason": slot.reason}), 503)

    @app.get("/release")
    def release() -> Response:
        """What this container serves: the deploy checks a host's release and the gate reads the
        champion's metrics from here."""
        predictor = registry.default_model()
        return json_response(json.dumps({
            "release": settings.release, "model": predictor.name, "version": predictor.version,
            "manifest": predictor.manifest}, default=str))

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.exposition(hosting.collectors), mimetype=metrics.CONTENT_TYPE)

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        return json_response(json.dumps({
            "MaxConcurrentTransforms": settings.workers,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": int(settings.max_payload_mb),
        }))

    def call(target: str | None) -> Invocation:
        return Invocation(request.get_data(cache=False), request.headers.get("Content-Type"),
                          request.headers.get("Accept"), target, g.get("request_id"),
                          request.headers.get(ENABLE_EXPLANATIONS))

    @app.post("/invocations")
    def invocations() -> Response:
        return answer_response(dataplane.invoke(call(request.headers.get(TARGET_MODEL))))

    # --- SageMaker multi-model endpoint API ---------------------------------------------
    @app.get("/models")
    def mme_list() -> Response:
        return json_response(json.dumps({"models": registry.mme_list()}))

    @app.post("/models")
    def mme_load() -> Response:
        data = codecs.json_object(request.get_data(cache=True), request.headers.get("Content-Type"))
        name, url = data.get("model_name"), data.get("url")
        if not isinstance(name, str) or not isinstance(url, str):
            raise BadInput("Load needs {\"model_name\": ..., \"url\": ...}")
        registry.mme_load(name, url)
        return json_response(json.dumps({"status": f"Model {name} loaded"}))

    @app.get("/models/<name>")
    def mme_get(name: str) -> Response:
        registry.mme_get(name)
        return json_response(json.dumps(next(m for m in registry.mme_list() if m["modelName"] == name)))

    @app.delete("/models/<name>")
    def mme_unload(name: str) -> Response:
        registry.mme_unload(name)
        return json_response(json.dumps({"status": f"Model {name} unloaded"}))

    @app.post("/models/<name>/invoke")
    def mme_invoke(name: str) -> Response:
        return answer_response(dataplane.invoke(call(None), registry.mme_get(name)))

    return app


def _install_hooks(app: Flask, settings: Settings) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = request_id(request.headers.get(h) for h in REQUEST_ID_HEADERS)
        g.started = time.perf_counter()
        request_id_var.set(g.request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        rid = getattr(g, "request_id", None)
        if rid:
            response.headers["X-Request-Id"] = rid
        attrs = request.headers.get(CUSTOM_ATTRIBUTES)
        if attrs is not None:
            response.headers[CUSTOM_ATTRIBUTES] = attrs
        seconds = time.perf_counter() - getattr(g, "started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        finished(route, request.method, request.path, response.status_code, str(g.get("model_version", "")),
                 seconds)
        return response

    @app.teardown_request
    def _forget(exc: BaseException | None) -> None:
        request_id_var.set(None)

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        status, body, headers = error_parts(exc, getattr(g, "request_id", None))
        return json_response(body, status, headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        mapped: ServiceError
        if isinstance(exc, RequestEntityTooLarge):
            discard_body(request.environ.get("wsgi.input"), request.content_length)
            mapped = too_large(settings)
        elif exc.code == 404:
            mapped = NotFound(f"No route {request.method} {request.path}")
        elif exc.code == 405:
            mapped = MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
        else:
            mapped = ServiceError(exc.description or exc.name)
            mapped.status, mapped.code = exc.code or 500, exc.name.lower().replace(" ", "_")
        return _service_error(mapped)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _service_error(ServiceError("Internal error; see the server log for this request id"))
