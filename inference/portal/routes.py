"""HTTP routes of the portal and the multi-model API: they parse, call the services, serialise.

Mounted on the same app as /ping and /invocations by ``install``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, g, request, send_from_directory

from container.settings import Settings
from inference import codecs
from inference.errors import BadInput
from inference.portal import openapi
from inference.portal.auth import KeyChecker
from inference.portal.capture import Capture
from inference.portal.jobs import JobService, PortalConfig
from inference.portal.repository import Repository
from inference.portal.store import Store

log = logging.getLogger("inference.portal")
STATIC = Path(__file__).parent / "static"


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def _body() -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.args)
    raw = request.get_data(cache=True)
    if not raw.strip():
        return dict(request.args)
    mtype, _ = codecs.parse_media_type(request.headers.get("Content-Type"))
    if mtype not in ("application/json", ""):
        from inference.errors import UnsupportedMediaType

        raise UnsupportedMediaType("Portal requests must be application/json")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"Body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput("The request body must be a JSON object")
    return {**dict(request.args), **data}


def _int(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
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


def _id(data: dict[str, Any], key: str = "prediction_id") -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise BadInput(f"'{key}' is required (a prediction id string)")
    return value


def build_services(settings: Settings) -> tuple[Store, Repository, JobService]:
    store = Store(settings.resolved_database_url, durable_records=settings.durable_records)
    store.migrate()
    repo_root = Path(settings.model_repository) if settings.model_repository else settings.paths.models_dir
    repo = Repository(repo_root, settings.paths.model_dir, settings.model_threads)
    roots = tuple(Path(p).resolve() for p in settings.allowed_roots.split(":") if p) or (
        Path(settings.resolved_data_dir).resolve(), settings.paths.base.resolve())
    config = PortalConfig(max_inline_rows=settings.max_inline_rows, chunk_rows=settings.job_chunk_rows,
                          lease_seconds=settings.lease_seconds,
                          allowed_schemes=tuple(s for s in settings.allowed_schemes.split(",") if s),
                          allowed_roots=roots, workdir=Path(settings.resolved_data_dir) / "work")
    return store, repo, JobService(store, repo, config)


def install(app: Flask, settings: Settings, holder: Any) -> None:
    store, repo, jobs = build_services(settings)
    keys = KeyChecker(store, settings.auth)
    app.extensions["portal"] = jobs
    app.extensions["portal_keys"] = keys
    app.extensions["repository"] = repo
    app.extensions["capture"] = Capture(store, settings.capture_percent) if settings.capture_percent else None
    if settings.job_worker:
        jobs.start_worker()

    api = Blueprint("portal", __name__)

    @api.before_request
    def _auth() -> None:
        keys.check(request.headers.get("Authorization"), request.headers.get("X-Api-Key"))

    @api.post("/api/providers/prediction/create")
    def create() -> Response:
        return _json(jobs.create(_body(), g.get("request_id")), 202)

    @api.post("/api/providers/prediction/invoke")
    def invoke() -> Response:
        result = jobs.invoke(_body(), g.get("request_id"))
        g.model_version = result["model"]["version"]
        return _json(result)

    @api.route("/api/providers/prediction/check", methods=["GET", "POST"])
    def check() -> Response:
        data = _body()
        return _json(jobs.check(_id(data), _int(data, "offset", 0, 0, 10**9),
                                _int(data, "limit", 100, 1, 10_000)))

    @api.route("/api/providers/prediction/list", methods=["GET", "POST"])
    def list_() -> Response:
        data = _body()
        items = jobs.list_predictions(data.get("status"), data.get("model"), data.get("kind"),
                          _int(data, "limit", 50, 1, 1000), _int(data, "offset", 0, 0, 10**9))
        return _json({"predictions": items})

    @api.post("/api/providers/prediction/cancel")
    def cancel() -> Response:
        return _json(jobs.cancel(_id(_body())))

    @api.post("/api/providers/prediction/retry")
    def retry() -> Response:
        return _json(jobs.retry(_id(_body())))

    @api.route("/api/providers/prediction/compare", methods=["GET", "POST"])
    def compare() -> Response:
        data = _body()
        return _json(jobs.compare(_id(data, "a"), _id(data, "b"), _int(data, "bins", 20, 2, 200)))

    @api.get("/api/models")
    def models() -> Response:
        return _json({"models": [e.summary() for e in repo.entries()]})

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

    # --- SageMaker multi-model endpoint API over the same repository -------------------------
    @app.get("/models")
    def mme_list() -> Response:
        return _json({"models": repo.mme_list()})

    @app.post("/models")
    def mme_load() -> Response:
        data = _body()
        name, url = data.get("model_name"), data.get("url")
        if not isinstance(name, str) or not isinstance(url, str):
            raise BadInput("Load needs {\"model_name\": ..., \"url\": ...}")
        repo.mme_load(name, url)
        return _json({"status": f"Model {name} loaded"})

    @app.get("/models/<name>")
    def mme_get(name: str) -> Response:
        repo.mme_get(name)
        return _json(next(m for m in repo.mme_list() if m["modelName"] == name))

    @app.delete("/models/<name>")
    def mme_unload(name: str) -> Response:
        repo.mme_unload(name)
        return _json({"status": f"Model {name} unloaded"})

    @app.post("/models/<name>/invoke")
    def mme_invoke(name: str) -> Response:
        from inference.app import invoke as invoke_model

        return invoke_model(repo.mme_get(name), settings)
