"""The serving app factory: the composition root of one `serve` worker.

It builds the model registry (the default model starts loading in the background), the
data plane over it, the hosting routes, and plugs in the MLapp portal when MLAPP_ENABLED.
Only this module and `serve` know that both exist; the hosting core never imports the portal.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from flask import Flask

from container.settings import Settings
from inference import predictors
from inference.dataplane import DataPlane
from inference.hosting import Hosting, Plugin, create_hosting_app
from inference.predictors import Predictor
from inference.registry import ModelRegistry


def create_app(settings: Settings | None = None, predictor: Predictor | None = None,
               plugins: list[Plugin] | None = None) -> Flask:
    """Build the WSGI app; ``predictor`` (ready) replaces loading /opt/ml/model."""
    settings = settings or Settings.from_env()
    root = Path(settings.model_repository) if settings.model_repository else settings.paths.models_dir
    # /ping stays instant and says 503 while loading; a prediction that arrives at a worker
    # still warming up waits for it rather than failing (other workers may already be ready).
    # SAGEMAKER_INFERENCE_OUTPUT and MLSHIP_FAST reach every model the registry loads (default and
    # multi-model).
    loader = partial(predictors.load, output_keys=settings.inference_output, fast=settings.fast) \
        if settings.inference_output or not settings.fast else None
    registry = ModelRegistry.for_directory(settings.paths.model_dir, root, settings.model_threads,
                                           settings.model_name or None,
                                           load_wait=max(1.0, settings.timeout - 5.0), loader=loader,
                                           predictor=predictor, deferred=True)
    hosting = Hosting(settings, registry, DataPlane(registry, settings.default_accept, settings.batch,
                                                    fast=settings.fast))
    app = create_hosting_app(hosting)
    if settings.fast:
        _speed_up(app, hosting)
    if plugins is None:
        plugins = []
        if settings.portal:
            from inference.portal.routes import install

            plugins.append(install)
    for plugin in plugins:
        plugin(app, hosting)
    # Loading starts once every route is compiled: CPython 3.11.7 can fail an ast.parse (werkzeug
    # compiles each URL rule with one) while another thread parses too, as a model load may
    # ("SystemError: AST constructor recursion depth mismatch", seen in the tests).
    registry.default.start()
    return app


def _speed_up(app: Flask, hosting: Hosting) -> None:
    """The speed layer (MLSHIP_FAST): /ping and /invocations answered ahead of Flask (the same
    answers, less work), access lines written by hand (the same lines)."""
    from inference import exchange
    from inference.fast.hotpath import HotPath
    from inference.fast.lines import access_lines

    exchange.write_access_lines_with(access_lines.timed)
    app.wsgi_app = HotPath(app.wsgi_app, hosting.settings, hosting.registry,  # type: ignore[method-assign]
                           hosting.dataplane)
