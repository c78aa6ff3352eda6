"""`train`: the SageMaker training entry point.

settings -> job environment -> validate hyperparameters (before any data) -> fit ->
model committed to /opt/ml/model -> exit 0. On failure, /opt/ml/output/failure starts
with one line saying what to change (SageMaker keeps 1,024 characters as FailureReason),
the traceback follows, and the exit code is non-zero.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from container import logs
from container.paths import MLPaths
from container.privileges import drop_to
from container.settings import Settings
from training import registry
from training.checkpoints import StopFlag
from training.environment import TrainingEnvironment
from training.errors import AlgorithmError, TrainingError, UserError
from training.hyperparameters import validate

log = logging.getLogger("training")
FAILURE_LIMIT = 1024
EXIT_CODES = {"ClientError": 1, "AlgorithmError": 2, "PlatformError": 3}


def write_failure(paths: MLPaths, headline: str, detail: str = "") -> None:
    """First line = the actionable message; SageMaker shows the first 1,024 characters.

    Never raises: a failure file that cannot be written (output/ not writable) is said on stderr,
    and the exit code still tells the platform what kind of failure it was.
    """
    headline = " ".join(headline.split())
    text = headline if not detail else f"{headline}\n\n{detail}"
    try:
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(text, encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"train: could not write {paths.failure} ({exc}); the failure was: {headline}\n")


def _writable_folders(paths: MLPaths) -> list[Path]:
    """What `train` writes: the model, the output, and the checkpoints (SageMaker's LocalPath)."""
    folders = [paths.model_dir, paths.output_dir, paths.checkpoints_dir]
    try:
        local = json.loads(paths.checkpointconfig.read_text()).get("LocalPath")
    except (OSError, ValueError, AttributeError):
        local = None
    if isinstance(local, str) and local:
        folders.append(Path(local))
    return folders


def check_writable(folders: list[Path]) -> None:
    """Fail at once, before any data is read, when the model or output folder cannot be written."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise UserError(
                f"{folder} is not writable by uid {os.geteuid()} ({exc.strerror or exc}); start the "
                "container as root (as SageMaker does: the image hands its folders to its own user) or "
                "mount the folder writable for this uid") from None


def _family_module(family: str) -> Any:
    import importlib

    return importlib.import_module(f"training.{family}.task")


def run(paths: MLPaths, stop: StopFlag) -> dict[str, Any]:
    check_writable([paths.model_dir, paths.output_dir])
    env = TrainingEnvironment.load(paths)
    env.export()
    log.info("training job %s on %s (hosts %s)", env.job_name, env.current_host, env.hosts)
    name = str(env.hyperparameters.get("algorithm", registry.DEFAULT_ALGORITHM))
    algorithm_cls = registry.get(name)
    task = _family_module(algorithm_cls.family)
    params = validate(env.hyperparameters, task.declared(algorithm_cls),
                      f"algorithm '{name}'")
    if "train" not in env.channels:
        raise UserError(
            f"Channel 'train' is required but the job has channels {env.channels or 'none'}; "
            f"put training files under {env.channel_dir('train')}"
        )
    log.info("hyperparameters: %s", json.dumps(params, default=str))
    if not env.is_master:
        log.info("host %s is not the master (%s); single-host algorithm, nothing to do",
                 env.current_host, env.hosts[0])
        return {}
    manifest: dict[str, Any] = task.run(env, params, algorithm_cls, stop)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    settings = Settings.for_program("train")
    if settings is None:
        return 3
    logs.configure(settings.log_level)
    paths = settings.paths
    if drop_to(settings.run_as, _writable_folders(paths)):
        log.info("started as root; training as %s", settings.run_as)
    for stale in (paths.failure, paths.success):
        with contextlib.suppress(OSError):  # an output folder we cannot write is reported by run()
            stale.unlink(missing_ok=True)
    stop = StopFlag()
    stop.install()
    try:
        run(paths, stop)
    except TrainingError as exc:
        log.error(exc.headline)
        write_failure(paths, exc.headline, traceback.format_exc())
        return EXIT_CODES.get(exc.kind, 2)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return _algorithm_error(paths, exc)
        where = exc.filename or "the job's volume"
        headline = (f"ClientError: no space left on the device while writing {where}; give the job a "
                    "larger volume (VolumeSizeInGB) or a smaller model (fewer rounds, a smaller "
                    "max_apps); no model was written")
        log.error(headline)
        write_failure(paths, headline, traceback.format_exc())
        return 1
    except MemoryError:
        headline = ("ClientError: training ran out of memory; use an instance with more memory, "
                    "fewer rows, or a smaller max_apps")
        log.error(headline)
        write_failure(paths, headline, traceback.format_exc())
        return 1
    except Exception as exc:
        return _algorithm_error(paths, exc)
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    paths.success.touch()
    return 0


def _algorithm_error(paths: MLPaths, exc: BaseException) -> int:
    """Our bug: say so, keep the traceback for the report."""
    err = AlgorithmError(f"{type(exc).__name__}: {exc}")
    log.exception(err.headline)
    write_failure(paths, err.headline, traceback.format_exc())
    return 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
