"""The portal plug-in: its HTTP routes (they parse, call the service, serialise) and its wiring.

``install`` is handed the hosting core; it builds the store and the job service over the
shared data plane, plugs data capture in as the data plane's recorder and adds the jobs
gauge to /metrics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request, send_from_directory
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import InterfaceError, OperationalError

from inference import codecs
from inference.hosting import Hosting
from inference.portal import openapi
from inference.portal import requests as parse
from inference.portal.auth import KeyChecker
from inference.portal.capture import Capture
from inference.portal.collector import JobsCollector
from inference.portal.config import PortalConfig
from inference.portal.health import RateLimitedLog, StoreHealth, unavailable
from inference.portal.jobs import JobService
from inference.portal.store import Store

STATIC = Path(__file__).parent / "static"


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def _body() -> dict[str, Any]:
    """Query parameters, overlaid by the JSON body of a POST."""
    if request.method == "GET":
        return dict(request.args)
    data = codecs.json_object(request.get_data(cache=True), request.headers.get("Content-Type"))
    return {**dict(request.args), **data}


def _replayed(response: Response, replayed: bool) -> Response:
    """Mark the recorded answer of an earlier call with the same request id (as Stripe's
    Idempotent-Replayed does): the body is that call's."""
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def install(app: Flask, hosting: Hosting) -> None:
    settings = hosting.settings
    store = Store(settings.resolved_database_url, durable_records=settings.durable_records)
    # The schema is applied here or, while the store is down, by a retrying thread: a worker boots
    # (and /ping, /invocations serve) whatever state the store is in.
    health = StoreHealth(store)
    store_errors = RateLimitedLog(logging.getLogger("inference.portal"))
    jobs = JobService(store, hosting.dataplane, PortalConfig.from_settings(settings))
    keys = KeyChecker(jobs.store, settings.auth)
    capture = Capture(jobs.store, settings.capture_percent) if settings.capture_percent else None
    hosting.dataplane.recorder = capture
    hosting.collectors.append(JobsCollector(jobs.store.counts_by_status))
    app.extensions["portal"] = jobs
    app.extensions["portal_keys"] = keys
    app.extensions["capture"] = capture
    app.extensions["portal_health"] = health
    if settings.job_worker:
        health.when_ready(jobs.start_worker)

    api = Blueprint("portal", __name__)

    @api.before_request
    def _auth() -> None:
        health.require()
        keys.check(request.headers.get("Authorization"), request.headers.get("X-Api-Key"))

    @api.errorhandler(OperationalError)
    @api.errorhandler(InterfaceError)
    @api.errorhandler(sa_exc.TimeoutError)
    def _store_down(exc: Exception) -> Response:
        # The store went away mid-request: a 503 naming it (the caller may retry), not a 500; the
        # driver's words (host, port) go to the log only.
        store_errors.exception(f"portal store failed mid-request ({type(exc).__name__})")
        return current_app.handle_user_exception(unavailable("a query failed"))  # type: ignore[return-value]

    @api.post("/api/providers/prediction/create")
    def create() -> Response:
        job, replayed = jobs.create(_body(), g.get("request_id"), request.headers.get("X-Request-Id"))
        return _replayed(_json(job, 202), replayed)

    @api.post("/api/providers/prediction/invoke")
    def invoke() -> Response:
        result, replayed = jobs.invoke(_body(), g.get("request_id"), request.headers.get("X-Request-Id"))
        g.model_version = result["model"]["version"]
        return _replayed(_json(result), replayed)

    @api.route("/api/providers/prediction/check", methods=["GET", "POST"])
    def check() -> Response:
        data = _body()
        return _json(jobs.check(parse.prediction_id(data), parse.whole_number(data, "offset", 0, 0, 10**9),
                                parse.whole_number(data, "limit", 100, 1, 10_000)))

    @api.route("/api/providers/prediction/list", methods=["GET", "POST"])
    def list_() -> Response:
        data = _body()
        items = jobs.list_predictions(data, parse.whole_number(data, "limit", 50, 1, 1000),
                                      parse.whole_number(data, "offset", 0, 0, 10**9))
        return _json({"predictions": items})

    @api.post("/api/providers/prediction/cancel")
    def cancel() -> Response:
        return _json(jobs.cancel(parse.prediction_id(_body())))

    @api.post("/api/providers/prediction/retry")
    def retry() -> Response:
        return _json(jobs.retry(parse.prediction_id(_body())))

    @api.route("/api/providers/prediction/compare", methods=["GET", "POST"])
    def compare() -> Response:
        data = _body()
        return _json(jobs.compare(parse.prediction_id(data, "a"), parse.prediction_id(data, "b"),
                                  parse.whole_number(data, "bins", 20, 2, 200)))

    @api.get("/api/models")
    def models() -> Response:
        return _json({"models": [e.summary() for e in hosting.registry.entries()]})

    app.register_blueprint(api)

    @app.get("/api/openapi.json")
    def spec() -> Response:
        return _json(openapi.spec())

    @app.get("/mlapp/")
    def page() -> Response:
        return send_from_directory(STATIC, "index.html")

    @app.get("/mlapp/<path:name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC, name)
