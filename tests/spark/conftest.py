"""A real standalone Spark cluster on loopback (a master and two workers, 1 core and 1 GB each),
started once per test session and torn down after; and the tiny models the Spark tests score."""

from __future__ import annotations

import logging
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from container.paths import MLPaths
from inference.spark.cluster import LocalCluster
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
# py4j logs "Closing down clientserver connection" from a finaliser at interpreter exit, after
# pytest has closed the streams: a "--- Logging error ---" block at the end of every run.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("spark")
    # Executors import this checkout (the Python workers they start read PYTHONPATH).
    with LocalCluster(base, workers=2, cores=1, memory="1g", pythonpath=str(ROOT)) as cluster:
        yield cluster
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def propensity_model(tmp_path_factory: pytest.TempPathFactory) -> MLPaths:
    """A tiny matrix-factorisation propensity model from the project's synthetic interactions."""
    from training.checkpoints import StopFlag
    from training.cli import run
    from training.propensity import synth

    hps = {"algorithm": "mf", "epochs": 2, "batch_size": 128, "factors": 4, "patience": 0}
    paths = factories.opt_ml(tmp_path_factory.mktemp("propensity") / "opt_ml", hps)
    inter, _, _ = synth.generate(40, 25, 8, seed=1)
    inter.to_csv(paths.channel("train") / "interactions.csv", index=False)
    assert run(paths, StopFlag())
    return paths


@pytest.fixture(scope="session")
def gender_tarball(gender_model: MLPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gender model as SageMaker ships it: model.tar.gz with the model files at its top."""
    target = tmp_path_factory.mktemp("tarball") / "model.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        for item in sorted(gender_model.model_dir.iterdir()):
            tar.add(item, arcname=item.name)
    return target
