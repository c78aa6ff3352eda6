"""Shared fixtures: a temporary /opt/ml tree, and trained tiny models reused per session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from container.paths import MLPaths
from tests import factories

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="session", autouse=True)
def speed_layer_switch() -> Iterator[None]:
    """The suites run with the speed layer on and off (scripts/test_all.py sets MLSHIP_FAST for the
    second run): the switch reaches every Settings a test builds from a mapping of its own, unless
    the test sets it itself; `serve` processes the tests start inherit it from the environment.
    MLSHIP_TEST_WALK=numpy walks the trees in NumPy in this process."""
    patch = pytest.MonkeyPatch()
    fast = os.environ.get("MLSHIP_FAST")
    if fast is not None:
        from container.settings import Settings

        real = Settings.from_env

        def from_env(environ: Mapping[str, str] | None = None) -> Settings:
            if environ is not None and "MLSHIP_FAST" not in environ:
                environ = {**environ, "MLSHIP_FAST": fast}
            return real(environ)

        patch.setattr(Settings, "from_env", from_env)
    if os.environ.get("MLSHIP_TEST_WALK") == "numpy":
        # The forest walked by NumPy, as where the C extension could not be built (scripts/test_all.py
        # runs tests/service so once): the whole suite through that path, not only comparisons.
        from modelformat import forest
        from modelformat.gender import record_rows

        patch.setattr(forest, "compiled", None)
        patch.setattr(record_rows, "compiled", None)
    yield
    patch.undo()


def speed_layer_on() -> bool:
    """What the run's switch says (tests of the speed layer's own parts skip when it is off)."""
    from container.values import boolean

    return boolean(os.environ.get("MLSHIP_FAST", "true")) is not False


@pytest.fixture
def opt_ml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MLPaths:
    monkeypatch.setenv("SM_BASE_DIR", str(tmp_path / "opt_ml"))
    return factories.opt_ml(tmp_path / "opt_ml")


def _train(base: Path, hps: dict[str, object], fmt: str = "csv") -> MLPaths:
    from training.checkpoints import StopFlag
    from training.cli import run

    paths = factories.opt_ml(base, hps)
    if hps.get("input_format") == "numeric":
        factories.write_numeric(paths, rows=400, features=6, header=True)
    else:
        factories.write_devices(paths, rows=400, fmt=fmt)
    run(paths, StopFlag())
    return paths


@pytest.fixture(scope="session")
def gender_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLPaths]:
    """A trained XGBoost gender model (raw device records), shared by the serving tests."""
    yield _train(tmp_path_factory.mktemp("gender"), {**factories.FAST_XGB})


@pytest.fixture(scope="session")
def numeric_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLPaths]:
    """A model trained on featurised numeric CSV rows (header label,f0..f5)."""
    yield _train(tmp_path_factory.mktemp("numeric"), {**factories.FAST_XGB, "input_format": "numeric"})


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


PG_BASE = os.environ.get("MLSHIP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory, gender_model: MLPaths) -> Path:
    """models/gender/v1 (XGBoost) and models/gender/v2 (logistic regression), same features."""
    import shutil

    root = tmp_path_factory.mktemp("repo") / "models"
    shutil.copytree(gender_model.model_dir, root / "gender" / "v1")
    v2 = _train(tmp_path_factory.mktemp("gender-v2"), {"algorithm": "logreg"})
    shutil.copytree(v2.model_dir, root / "gender" / "v2")
    return root


def _pg_schema_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of its own on the machine's server, dropped afterwards."""
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_BASE} is not reachable ({exc}); `./run setup` starts it")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(schema)
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty portal database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mlapp.db'}"
        return
    with pg_schema() as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (for the tests of several processes sharing one store)."""
    with pg_schema() as url:
        yield url


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3/SageMaker server on a free port; boto3 clients made without an endpoint use it."""
    from moto.server import ThreadedMotoServer

    from tests.e2e.helpers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield url
    finally:
        server.stop()
