"""The serving app factory: /ping, /invocations, /execution-parameters (and the portal).

Routes only translate between HTTP and the pure core (codecs, predictors). The model is
loaded once per worker, in the background, and /ping answers 200 only after a warm-up
prediction on stored examples worked; until then 503 with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from container.logs import request_id_var
from container.settings import Settings
from inference import codecs, metrics
from inference.errors import (
    MethodNotAllowed,
    ModelNotReady,
    NotFound,
    PayloadTooLarge,
    ServiceError,
)
from inference.predictors import Predictor

log = logging.getLogger("inference.app")
access = logging.getLogger("inference.access")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"
REQUEST_ID_HEADERS = ("X-Amzn-SageMaker-Inference-Id", "X-Request-Id")


class ModelHolder:
    """Loads the predictor once (in a background thread) and remembers how that went."""

    def __init__(self, loader: Callable[[], Predictor] | None = None,
                 predictor: Predictor | None = None) -> None:
        self.state = "loading"
        self.reason = "model is loading"
        self.predictor: Predictor | None = None
        self.loaded_at: float | None = None
        self._done = threading.Event()
        self._loader = loader
        if predictor is not None:
            self._finish(lambda: predictor)
        elif loader is not None:
            threading.Thread(target=self._finish, args=(loader,), name="model-loader",
                             daemon=True).start()
        else:
            self.state, self.reason = "failed", "no model configured"
            self._done.set()

    def _finish(self, loader: Callable[[], Predictor]) -> None:
        started = time.monotonic()
        try:
            predictor = loader()
            predictor.warmup()
        except Exception as exc:  # loading errors must reach /ping, not kill the worker
            log.exception("model failed to load")
            self.state, self.reason = "failed", f"model failed to load: {type(exc).__name__}: {exc}"
            self._done.set()
            return
        self.predictor = predictor
        self.loaded_at = time.time()
        self.state, self.reason = "ready", "ok"
        self._done.set()
        log.info("model %s (version %s) ready in %.2fs", predictor.name, predictor.version,
                 time.monotonic() - started)

    def get(self, wait: float = 0.0) -> Predictor:
        """The predictor; a request that arrives during warm-up waits up to ``wait`` seconds."""
        if self.predictor is None and wait > 0:
            self._done.wait(wait)
        if self.predictor is None:
            raise ModelNotReady(self.reason)
        return self.predictor

    def wait(self, timeout: float = 60.0) -> bool:
        self._done.wait(timeout)
        return self.state == "ready"


def _json(body: bytes | str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, mimetype="application/json", headers=headers)


def create_app(
    settings: Settings | None = None,
    predictor: Predictor | None = None,
    loader: Callable[[], Predictor] | None = None,
    extensions: list[Callable[[Flask, Settings, ModelHolder], None]] | None = None,
) -> Flask:
    """Build the WSGI app. Give ``predictor`` (ready) or ``loader`` (run in the background)."""
    import json

    settings = settings or Settings.from_env()
    if predictor is None and loader is None:
        from inference import predictors

        model_dir = settings.paths.model_dir
        loader = lambda: predictors.load(model_dir, settings.model_threads,  # noqa: E731
                                         settings.model_name or None)
    holder = ModelHolder(loader=loader, predictor=predictor)

    app = Flask("inference")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes
    app.extensions["settings"] = settings
    app.extensions["model"] = holder

    @app.before_request
    def _start() -> None:
        rid = next((request.headers[h] for h in REQUEST_ID_HEADERS if request.headers.get(h)), None)
        g.request_id = (rid or uuid.uuid4().hex)[:128]
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
        version = str(g.get("model_version", ""))
        metrics.REQUESTS.labels(route, request.method, str(response.status_code), version).inc()
        metrics.LATENCY.labels(route, version).observe(seconds)
        if request.path != "/ping" and access.isEnabledFor(logging.INFO):
            access.info("%s %s %d", request.method, request.path, response.status_code, extra={
                "status": response.status_code, "ms": round(seconds * 1000, 3)})
        return response

    @app.teardown_request
    def _forget(exc: BaseException | None) -> None:
        request_id_var.set(None)

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return _json(json.dumps(exc.body(getattr(g, "request_id", None))), exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        mapped: ServiceError
        if isinstance(exc, RequestEntityTooLarge):
            mapped = PayloadTooLarge(
                f"Request body exceeds {settings.max_payload_mb:g} MB; raise "
                "SAGEMAKER_MAX_PAYLOAD_IN_MB (up to 100) or send smaller batches")
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

    @app.get("/ping")
    def ping() -> Response:
        if holder.state == "ready":
            return _json(b'{"status":"healthy"}')
        return _json(json.dumps({"status": holder.state, "reason": holder.reason}), 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        portal = app.extensions.get("portal")
        counts = portal.store.counts_by_status if portal is not None else None
        return Response(metrics.exposition(counts), mimetype=metrics.CONTENT_TYPE)

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        return _json(json.dumps({
            "MaxConcurrentTransforms": settings.workers,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": int(settings.max_payload_mb),
        }))

    # /ping stays instant and says 503 while loading; a prediction that arrives at a worker
    # still warming up waits for it rather than failing (other workers may already be ready).
    load_wait = max(1.0, settings.timeout - 5.0)

    @app.post("/invocations")
    def invocations() -> Response:
        target = request.headers.get(TARGET_MODEL)
        repository = app.extensions.get("repository")
        if target and repository is not None:
            return invoke(repository.target(target), settings)
        model = holder.get(wait=load_wait)
        return invoke(model, settings)

    if extensions is None:
        extensions = []
        if settings.portal:
            from inference.portal.routes import install

            extensions.append(install)
    for extend in extensions:
        extend(app, settings, holder)
    return app


def invoke(model: Predictor, settings: Settings) -> Response:
    """Decode, predict, encode: the body of /invocations (shared with the MME route)."""
    accept = codecs.negotiate(request.headers.get("Accept"), settings.default_accept)
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise
    media, charset = codecs.request_type(request.headers.get("Content-Type"), body)
    inputs = codecs.decode(body, media, charset)
    if inputs.n_rows == 0:
        return Response(status=204)
    started = time.perf_counter()
    outputs = model.predict(inputs)
    capture = current_app.extensions.get("capture")
    if capture is not None and capture.sampled():
        _capture(capture, model, inputs, outputs, (time.perf_counter() - started) * 1000)
    payload, content_type = codecs.encode(outputs, accept, settings.batch)
    g.model_version = model.version
    metrics.ROWS.labels("invocations", model.name, model.version).inc(inputs.n_rows)
    return Response(payload, status=200, mimetype=content_type)


def _capture(capture: Any, model: Predictor, inputs: codecs.Inputs, outputs: codecs.Outputs,
             ms: float) -> None:
    from inference.portal.capture import CaptureItem

    if inputs.table is not None:
        records = inputs.table.to_dict(orient="records")
    else:
        assert inputs.matrix is not None
        records = [{"features": row} for row in inputs.matrix.tolist()]
    capture.offer(CaptureItem(model.name, model.version, g.get("request_id"), records, outputs, ms))

