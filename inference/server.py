"""`serve`: the SageMaker hosting entry point, gunicorn serving the Flask app factory.

gunicorn runs in this process (no shell, no extra supervisor), so SIGTERM from
SageMaker or `docker stop` reaches its master, which stops workers gracefully within
SageMaker's 30 s window. Workers answer one request at a time (CPU-bound prediction does not
suit gevent) on kept-alive connections (inference/worker.py), one model copy each, loaded after
fork (TensorFlow is not fork-safe).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from container import logs
from container.privileges import drop_to
from container.settings import Settings


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"0.0.0.0:{settings.port}",
        "workers": settings.workers,
        "worker_class": "inference.worker.KeepAliveWorker",
        "threads": 1,
        "timeout": settings.timeout,
        "graceful_timeout": 25,
        "keepalive": 5,
        "preload_app": False,
        # gunicorn 27's control socket (~/.gunicorn/gunicorn.ctl) would be shared by every server of
        # the same user and lets any local process of that user reconfigure this one: not wanted.
        "control_socket_disable": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": "container.logs.JsonFormatter"}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                    "stream": "ext://sys.stderr"}},
            "root": {"level": settings.log_level, "handlers": ["stderr"]},
            "loggers": {
                "gunicorn.error": {"level": settings.log_level, "handlers": ["stderr"],
                                   "propagate": False},
                "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
            },
        },
        # Each worker gets its own model copy and its own thread budget.
        "raw_env": [f"OMP_NUM_THREADS={settings.model_threads}"],
        "child_exit": _child_exit,
    }


def _child_exit(server: Any, worker: Any) -> None:
    from inference import metrics

    metrics.worker_exited(worker.pid)


def _metrics_dir(settings: Settings) -> None:
    """Workers share Prometheus samples through files; this must be set before they import it."""
    path = settings.metrics_dir or tempfile.mkdtemp(prefix="mlship-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in os.listdir(path):  # samples of an earlier run would be summed in otherwise
        if stale.endswith(".db"):
            os.unlink(os.path.join(path, stale))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def main(argv: list[str] | None = None) -> int:
    loaded = Settings.for_program("serve")
    if loaded is None:
        return 3
    settings: Settings = loaded  # a plain name the nested Server class can close over
    logs.configure(settings.log_level)
    writable = [Path(settings.resolved_data_dir)]
    if settings.metrics_dir:
        writable.append(Path(settings.metrics_dir))
    if drop_to(settings.run_as, writable):
        logging.getLogger("inference.server").info("started as root; serving as %s", settings.run_as)
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.model_threads))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(settings.model_threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _metrics_dir(settings)

    from gunicorn.app.base import BaseApplication

    from inference.app import create_app

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            logs.configure(settings.log_level)
            app = create_app(settings)
            # A worker enters gunicorn's accept loop only once its model is warm (or failed),
            # so a /ping that reaches any worker means what it says. The wait stays inside
            # gunicorn's worker timeout; a slower model goes on loading in the background and
            # that worker's /ping answers 503 meanwhile.
            app.extensions["model"].wait(settings.timeout * 0.5)
            # What is loaded now lives as long as the worker: keep it out of the cyclic GC's
            # scans, whose full passes over the model's objects were the p99 of small requests.
            gc.collect()
            gc.freeze()
            return app

    Server().run()
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
