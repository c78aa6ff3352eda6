"""Every environment variable the image reads: name, type, default and doc, in one place.

``Settings.from_env()`` is called once at process start; everything downstream receives
the frozen object. A bad value fails start-up with a message naming the variable.
``python -m container.settings`` prints the Markdown table the README carries.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from container.mediatypes import encodable_media_type
from container.paths import MLPaths, base_dir
from container.resources import available_cpus
from container.values import boolean


class SettingsError(ValueError):
    """An environment variable holds a value the image cannot use."""


def _bool(raw: str) -> bool:
    value = boolean(raw)
    if value is None:
        raise ValueError("must be 'true' or 'false'")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be a whole number >= 1")
    return value


def _number(accept: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """A parser of numbers that ``accept`` admits; ``rule`` is the error message."""

    def parse(raw: str) -> float:
        value = float(raw)
        if not math.isfinite(value) or not accept(value):
            raise ValueError(rule)
        return value

    return parse


_payload_mb = _number(lambda v: 0 < v <= 100, "must be > 0 and <= 100 (batch transform's maximum)")
_percent = _number(lambda v: 0 <= v <= 100, "must be between 0 and 100")
_seconds = _number(lambda v: 1 <= v <= 3600, "must be between 1 and 3600 seconds")
_rate = _number(lambda v: v >= 0, "must be a number of rows per second >= 0 (0: no cap)")


def _log_level(raw: str) -> str:
    levels = {"10": "DEBUG", "20": "INFO", "30": "WARNING", "40": "ERROR"}
    value = levels.get(raw.strip(), raw.strip().upper())
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR (or 10/20/30/40)")
    return value


def _names(raw: str) -> tuple[str, ...]:
    """'file, s3' -> ('file', 's3')."""
    return tuple(p.strip().lower() for p in raw.split(",") if p.strip())


def _paths(raw: str) -> tuple[str, ...]:
    """Colon-separated folders, as absolute paths."""
    return tuple(os.path.abspath(p) for p in raw.split(":") if p.strip())


# SAGEMAKER_INFERENCE_OUTPUT's keys for a binary classifier, as AWS's built-in XGBoost container reads
# them (sagemaker-xgboost-container, algorithm_mode/serve_utils.py); its regression key
# predicted_score has no meaning for a classifier (AWS answers NaN for it) and is refused here.
INFERENCE_KEYS = ("predicted_label", "labels", "probability", "probabilities", "raw_score", "raw_scores")


def _inference_keys(raw: str) -> tuple[str, ...]:
    """'predicted_label, Probability' -> ('predicted_label', 'probability'): comma-separated, spaces
    dropped and lower-cased as AWS's container does; an unknown or repeated key is refused."""
    keys = tuple(k for k in raw.replace(" ", "").lower().split(",") if k)
    unknown = [k for k in keys if k not in INFERENCE_KEYS]
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; the keys are {', '.join(INFERENCE_KEYS)}")
    if len(set(keys)) != len(keys):
        raise ValueError("names a key twice")
    return keys


def _str(raw: str) -> str:
    return raw.strip()


def _database_url(raw: str) -> str:
    """sqlite:///<path> or postgresql://user@host[:port]/db: a URL the store cannot use fails start-up."""
    from urllib.parse import urlsplit

    value = raw.strip()
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in {"sqlite", "postgresql", "postgresql+psycopg"}:
        raise ValueError("must be sqlite:///<path> or postgresql://<user>@<host>[:<port>]/<database>")
    try:
        urlsplit(value).port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("has a port that is not a number") from None
    return value


def _auth(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"auto", "required", "off"}:
        raise ValueError("must be auto, required or off")
    return value


def _spark_master(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("spark://", "sc://", "yarn", "k8s://", "local", "mesos://")):
        raise ValueError("must be spark://host:port, sc://host:port, yarn, k8s://..., or local[N]")
    return value


def env(
    name: str,
    default: Any,
    doc: str,
    parse: Callable[[str], Any] = _str,
    aliases: tuple[str, ...] = (),
    shown_default: str | None = None,
) -> Any:
    """Declare a setting backed by an environment variable."""
    meta = {"env": name, "doc": doc, "parse": parse, "aliases": aliases, "shown": shown_default}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """A snapshot of the process environment, validated."""

    # Each field is one declared variable (name, default, doc, parser), so neighbouring fields share a
    # shape on purpose (`duplicates` lists two such runs): the declarations are the table itself.
    # --- shared --------------------------------------------------------------
    base_dir: str = env(
        "SM_BASE_DIR",
        "/opt/ml",
        "Root of the /opt/ml contract; point it elsewhere to run outside a container.",
        aliases=("SAGEMAKER_BASE_DIR",),
    )
    log_level: str = env(
        "SM_LOG_LEVEL", "INFO", "Log level (name or number).", _log_level,
        aliases=("LOG_LEVEL", "SAGEMAKER_CONTAINER_LOG_LEVEL"),
    )
    run_as: str = env(
        "MLSHIP_RUN_AS", "",
        "User `train` and `serve` become when started as root, after handing it the /opt/ml folders "
        "they write (the image sets mlship; empty: stay as started).",
    )
    model_threads: int = env(
        "MODEL_THREADS", 1,
        "Threads each serving worker gives the model (XGBoost nthread, TF intra-op).",
        _positive_int,
    )
    # --- serving -------------------------------------------------------------
    port: int = env("SAGEMAKER_BIND_TO_PORT", 8080, "Port `serve` listens on.", _positive_int)
    workers: int = env(
        "SAGEMAKER_MODEL_SERVER_WORKERS", 0,
        "gunicorn worker processes; each holds one copy of the model.",
        _positive_int, shown_default="CPUs the container may use (affinity, cgroup quota)",
    )
    fast: bool = env(
        "MLSHIP_FAST", True,
        "The speed layer (inference/fast: our gunicorn worker, the hot path; the compiled tree walk, "
        "CSV parse and row writers); false: gunicorn's gthread worker, Flask routes and each model "
        "library's own predict, with the same answers.", _bool,
    )
    timeout: int = env(
        "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60,
        "Seconds a request may run before its worker is restarted.", _positive_int,
    )
    max_payload_mb: float = env(
        "SAGEMAKER_MAX_PAYLOAD_IN_MB", 6.0,
        "Largest request body in MB (413 above it); 6 = real-time limit, up to 100 for batch.",
        _payload_mb,
    )
    release: str = env(
        "MLSHIP_RELEASE", "",
        "Label of the release this container serves (the deploy sets the image tag); GET /release "
        "reports it beside the model's manifest, so a deploy can check what a host serves.",
    )
    default_accept: str = env(
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json",
        "Response type when Accept is missing or */*.", encodable_media_type,
    )
    batch: bool = env(
        "SAGEMAKER_BATCH", False,
        "Batch transform mode: one output line per input line.", _bool,
    )
    inference_output: tuple[str, ...] = env(
        "SAGEMAKER_INFERENCE_OUTPUT", (),
        "Keys of each gender answer, in this order, as AWS's built-in XGBoost container reads them "
        "(comma-separated: " + ", ".join(INFERENCE_KEYS) + "; README, Output keys); unset: label, "
        "probability, probability_<positive>.", _inference_keys, shown_default="(unset)",
    )
    inference_supported: tuple[str, ...] = env(
        "SAGEMAKER_INFERENCE_SUPPORTED", (),
        "Keys a deployment declares the container may be asked for, as Autopilot's container "
        "definitions list them; when set, SAGEMAKER_INFERENCE_OUTPUT must be among them.",
        _inference_keys, shown_default="(unset)",
    )
    model_name: str = env(
        "MODEL_NAME", "",
        "Name of the model served at /invocations; defaults to the manifest's algorithm.",
    )
    metrics_dir: str = env(
        "PROMETHEUS_MULTIPROC_DIR", "",
        "Directory where gunicorn workers share Prometheus samples for GET /metrics; emptied at start.",
        shown_default="a new temporary directory per `serve`",
    )
    # --- MLapp portal ----------------------------------------------------------
    database_url: str = env(
        "MLAPP_DATABASE_URL", "",
        "SQLAlchemy URL of the portal store; postgresql://... for several VMs.", _database_url,
        shown_default="sqlite:///$MLAPP_DATA_DIR/mlapp.db",
    )
    data_dir: str = env(
        "MLAPP_DATA_DIR", "",
        "Where the portal keeps its SQLite file and job results.",
        shown_default="$SM_BASE_DIR/mlapp",
    )
    durable_records: bool = env(
        "MLAPP_DURABLE_RECORDS", False,
        "Wait for PostgreSQL's WAL flush when recording online calls and captures (about 4x slower).",
        _bool,
    )
    capture_percent: float = env(
        "DATA_CAPTURE_PERCENT", 0.0,
        "Share of /invocations calls recorded in the portal store (0-100).", _percent,
    )
    portal: bool = env("MLAPP_ENABLED", True, "Serve the MLapp portal (the multi-model API is always on).",
                       _bool)
    model_repository: str = env(
        "MLAPP_MODEL_REPOSITORY", "",
        "Folder of models: <name>/<version>/model.json or <name>/model/model.json.",
        shown_default="$SM_BASE_DIR/models",
    )
    auth: str = env(
        "MLAPP_AUTH", "auto",
        "Portal API keys: required, off, or auto (required once any key was created, even if revoked).",
        _auth,
    )
    job_worker: bool = env(
        "MLAPP_JOB_WORKER", True, "Run queued batch jobs in this serve process's workers.", _bool,
    )
    job_chunk_rows: int = env(
        "MLAPP_JOB_CHUNK_ROWS", 20000, "Rows per batch-job chunk (memory bound and commit unit).",
        _positive_int,
    )
    job_max_rows_per_second: float = env(
        "MLAPP_JOB_MAX_ROWS_PER_SECOND", 0.0,
        "Cap on the rows per second a batch job processes in a serve process, so that online requests "
        "on the same host keep their latency (0: no cap).", _rate,
    )
    lease_seconds: float = env(
        "MLAPP_LEASE_SECONDS", 30.0,
        "A running job whose worker stops renewing this lease is picked up by another.", _seconds,
    )
    max_inline_rows: int = env(
        "MLAPP_MAX_INLINE_ROWS", 10000, "Largest number of inline records per portal request.",
        _positive_int,
    )
    allowed_schemes: tuple[str, ...] = env(
        "MLAPP_ALLOWED_SCHEMES", ("file", "s3"), "URI schemes a job may read and write (comma-separated).",
        _names, shown_default="file,s3",
    )
    allowed_roots: tuple[str, ...] = env(
        "MLAPP_ALLOWED_ROOTS", (),
        "Local folders jobs may read and write (colon-separated).", _paths,
        shown_default="$MLAPP_DATA_DIR:$SM_BASE_DIR",
    )
    # --- MLapp portal: the spark engine (issue 13) -----------------------------------
    spark_master: str = env(
        "MLAPP_SPARK_MASTER", "",
        "Where jobs created with engine 'spark' run: spark://host:7077, yarn, k8s://https://..., "
        "local[N], or a Spark Connect sc://host:15002 (empty: the spark engine is off).", _spark_master,
    )
    spark_submit_args: str = env(
        "MLAPP_SPARK_SUBMIT_ARGS", "",
        "More spark-submit options for those jobs, shell-quoted (e.g. --conf spark.executor.memory=2g "
        "--deploy-mode client).",
    )

    # --- reliability: memory sizing (issue 16) ---------------------------------
    model_memory_factor: float = env(
        "MLSHIP_MODEL_MEMORY_FACTOR", 8.0,
        "Bytes of worker memory per byte of model on disk, for the start-up check that the workers' "
        "model copies fit the cgroup memory limit (measured: README, reliability figures); 0 turns it off.",
        _number(lambda v: 0 <= v <= 1000, "must be between 0 and 1000"),
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            names = (f.metadata["env"], *f.metadata["aliases"])
            raw = next((source[n] for n in names if source.get(n, "").strip() != ""), None)
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{f.metadata['env']}={raw!r} is invalid: {exc}") from None
        _check_supported(values.get("inference_output", ()), values.get("inference_supported"))
        if "base_dir" not in values:
            values["base_dir"] = str(base_dir(source))
        if "workers" not in values:
            values["workers"] = available_cpus()
        return cls(**values)

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable the settings read, aliases included."""
        return [n for f in fields(cls) for n in (f.metadata["env"], *f.metadata["aliases"])]

    @classmethod
    def for_program(cls, program: str) -> Settings | None:
        """The settings of a console entry point, or None after saying on stderr which variable is
        wrong (the caller exits 3: the platform's configuration, not the user's data)."""
        try:
            return cls.from_env()
        except SettingsError as exc:
            sys.stderr.write(f"{program}: {exc}\n")
            return None

    @property
    def paths(self) -> MLPaths:
        from pathlib import Path

        return MLPaths(Path(self.base_dir))

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)

    @property
    def resolved_data_dir(self) -> str:
        return self.data_dir or os.path.join(self.base_dir, "mlapp")

    @property
    def resolved_allowed_roots(self) -> tuple[str, ...]:
        return self.allowed_roots or (self.resolved_data_dir, self.base_dir)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{os.path.join(self.resolved_data_dir, 'mlapp.db')}"


def _check_supported(output: tuple[str, ...], supported: tuple[str, ...] | None) -> None:
    """SAGEMAKER_INFERENCE_OUTPUT within SAGEMAKER_INFERENCE_SUPPORTED, where that is set (the check
    SageMaker's Python SDK makes against Autopilot's container definitions before deploying)."""
    outside = [k for k in output if supported is not None and k not in supported]
    if outside:
        raise SettingsError(f"SAGEMAKER_INFERENCE_OUTPUT={','.join(output)!r} is invalid: "
                            f"{', '.join(outside)} not in SAGEMAKER_INFERENCE_SUPPORTED "
                            f"({','.join(supported or ())})")


def markdown_table() -> str:
    """The README table of environment variables, generated from the declarations."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        meta = f.metadata
        name = f"`{meta['env']}`"
        if meta["aliases"]:
            name += " (" + ", ".join(f"`{a}`" for a in meta["aliases"]) + ")"
        shown = meta["shown"] if meta["shown"] is not None else str(f.default)
        rows.append(f"| {name} | {shown or '(empty)'} | {meta['doc']} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - documentation helper
    sys.stdout.write(markdown_table() + "\n")
