"""`serve`: the SageMaker hosting entry point, gunicorn serving the Flask app factory.

gunicorn runs in this process (no shell, no extra supervisor), so SIGTERM from
SageMaker or `docker stop` reaches its master, which stops workers gracefully within
SageMaker's 30 s window. Workers answer one request at a time (CPU-bound prediction does not
suit gevent) on kept-alive connections (inference/fast/worker.py; gunicorn's gthread worker with
MLSHIP_FAST off), one model copy each, loaded after fork (TensorFlow is not fork-safe).
"""

from __future__ import annotations

import atexit
import dataclasses
import gc
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from container import logs, resources
from container.privileges import drop_to
from container.settings import Settings, SettingsError

log = logging.getLogger("inference.server")
MiB = 1 << 20
# Measured (README "Reliability and security in figures"): a worker serving a small XGBoost model
# holds 223 MB resident (interpreter, Flask, NumPy, the model library); the gunicorn master 119 MB.
WORKER_BASE_BYTES = 224 * MiB
MASTER_BYTES = 128 * MiB
# The exit code of a configuration the platform must change (as for a bad environment variable).
CONFIG_EXIT = 3


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"0.0.0.0:{settings.port}",
        "workers": settings.workers,
        "worker_class": ("inference.fast.worker.KeepAliveWorker" if settings.fast
                         else "inference.gthread.GthreadWorker"),
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
        "pre_fork": _pre_fork if settings.fast else _no_pre_fork,
        "child_exit": _child_exit,
    }


def _no_pre_fork(server: Any, worker: Any) -> None:
    return None


def _pre_fork(server: Any, worker: Any) -> None:
    """In the arbiter, before each worker forks: its slot in the table of connection counts the
    workers share (inference/fast/balance.py), made on the first fork."""
    from inference.fast.balance import Shares

    shares = getattr(server, "connection_shares", None)
    if shares is None:
        shares = server.connection_shares = Shares(max(int(server.num_workers), 1) * 2)
    taken = {w.balance_slot for w in server.WORKERS.values() if getattr(w, "balance_slot", None) is not None}
    worker.balance_shares, worker.balance_slot = shares, shares.free_slot(taken)


def _child_exit(server: Any, worker: Any) -> None:
    from inference import metrics

    metrics.worker_exited(worker.pid)
    shares, slot = getattr(worker, "balance_shares", None), getattr(worker, "balance_slot", None)
    if shares is not None and slot is not None:
        shares.vacate(slot)  # its connections are gone: the others must not wait for it


def _remove_if_master(path: str, master: int) -> None:
    """The metrics folder `serve` made for itself goes when its master ends (workers are forks of it
    and run the same exit hooks)."""
    if os.getpid() == master:
        shutil.rmtree(path, ignore_errors=True)


def _metrics_dir(settings: Settings) -> bool:
    """Workers share Prometheus samples through files; this must be set before they import it.
    False (after saying why) when the folder cannot be used."""
    path = settings.metrics_dir
    if not path:
        path = tempfile.mkdtemp(prefix="mlship-metrics-")
        atexit.register(_remove_if_master, path, os.getpid())
    try:
        os.makedirs(path, exist_ok=True)
        for stale in os.listdir(path):  # samples of an earlier run would be summed in otherwise
            if stale.endswith(".db"):
                os.unlink(os.path.join(path, stale))
    except OSError as exc:
        log.error("PROMETHEUS_MULTIPROC_DIR=%s cannot be used: %s; point it at a writable folder or unset it",
                  path, exc.strerror or exc, extra={"exit_code": CONFIG_EXIT})
        return False
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return True


def plan_workers(settings: Settings, explicit: bool, limit: int | None,
                 model_bytes: int) -> tuple[int, str | None]:
    """The worker count to start, or an error saying why the model copies cannot fit ``limit``.

    Each worker loads its own copy of the model (after fork), so memory grows with the count:
    a worker is estimated at WORKER_BASE_BYTES plus MLSHIP_MODEL_MEMORY_FACTOR times the model's
    bytes on disk, and the master at MASTER_BYTES. A count the image chose itself (from the CPUs)
    is lowered to what fits; a count the user set is refused, naming the count that would fit.
    """
    wanted = settings.workers
    if limit is None or settings.model_memory_factor <= 0:
        return wanted, None
    per_worker = WORKER_BASE_BYTES + int(settings.model_memory_factor * model_bytes)
    fits = resources.workers_that_fit(limit, per_worker, MASTER_BYTES)
    if wanted <= fits:
        return wanted, None
    if not explicit and fits >= 1:
        return fits, None
    need = (MASTER_BYTES + wanted * per_worker) / MiB
    head = (f"SAGEMAKER_MODEL_SERVER_WORKERS={wanted}" if explicit else
            f"{wanted} worker(s) (one per CPU)")
    advice = (f"set SAGEMAKER_MODEL_SERVER_WORKERS={fits} or fewer, or raise the memory limit" if fits
              else "raise the memory limit (or set MLSHIP_MODEL_MEMORY_FACTOR=0 to skip this check)")
    return wanted, (
        f"{head} cannot fit the container's memory limit of {limit / MiB:.0f} MiB: each worker holds "
        f"its own model copy, about {per_worker / MiB:.0f} MiB ({WORKER_BASE_BYTES / MiB:.0f} MiB + "
        f"{settings.model_memory_factor:g} x {model_bytes / MiB:.1f} MiB of model on disk), "
        f"{need:.0f} MiB in all with the master; {advice}")


def _sized(settings: Settings) -> Settings | None:
    """``settings`` with a worker count that fits the cgroup memory limit, or None after logging why not."""
    limit = resources.cgroup_memory_limit(resources.CGROUP)
    explicit = bool(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "").strip())
    model_bytes = resources.directory_bytes(settings.paths.model_dir)
    workers, error = plan_workers(settings, explicit, limit, model_bytes)
    if error:
        log.error(error, extra={"check": "memory", "workers": settings.workers, "memory_limit": limit,
                                "model_bytes": model_bytes, "exit_code": CONFIG_EXIT})
        return None
    if workers != settings.workers:
        log.warning("starting %d worker(s) instead of one per CPU (%d): more model copies would not fit "
                    "the memory limit of %.0f MiB", workers, settings.workers, (limit or 0) / MiB,
                    extra={"check": "memory", "workers": workers, "memory_limit": limit,
                           "model_bytes": model_bytes})
        return dataclasses.replace(settings, workers=workers)
    return settings


def main(argv: list[str] | None = None) -> int:
    logs.json_stdio()  # gunicorn prints some errors around its logger; those lines are JSON too
    try:
        loaded = Settings.from_env()
    except SettingsError as exc:  # said as a JSON line too: every line `serve` writes is one
        logs.configure()
        log.error("serve: %s", exc, extra={"exit_code": CONFIG_EXIT})
        return CONFIG_EXIT
    logs.configure(loaded.log_level)
    sized = _sized(loaded)
    if sized is None:
        return CONFIG_EXIT
    settings: Settings = sized  # a plain name the nested Server class can close over
    writable = [Path(settings.resolved_data_dir)]
    if settings.metrics_dir:
        writable.append(Path(settings.metrics_dir))
    if drop_to(settings.run_as, writable):
        log.info("started as root; serving as %s", settings.run_as)
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.model_threads))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(settings.model_threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not _metrics_dir(settings):
        return CONFIG_EXIT

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
