"""Arrow batches in, Arrow batches out, through the predictor /invocations uses. No Spark in here.

Each Python worker process keeps the predictors it loaded (``load``, keyed by model path), so a
model is read and warmed up once per process, not once per batch or task. A model.tar.gz is
unpacked once per process too, into a temporary folder.
"""

from __future__ import annotations

import atexit
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from inference import predictors
from inference.codecs import Inputs, Outputs
from inference.predictors import Predictor
from modelformat import manifest as manifest_io
from modelformat.arrowtypes import arrow_list_type

_LOADED: dict[str, Predictor] = {}
_LOCK = threading.Lock()
TARBALL_SUFFIXES = (".tar.gz", ".tgz")


def is_tarball(path: str | Path) -> bool:
    return str(path).endswith(TARBALL_SUFFIXES)


def model_dir(path: Path) -> Path:
    """The folder holding model.json: ``path`` itself, or a model.tar.gz unpacked (at its top or in
    its one sub-folder, as `train` and SageMaker pack it)."""
    if path.is_dir():
        if not (path / manifest_io.MANIFEST).is_file():
            raise ValueError(f"{path} holds no {manifest_io.MANIFEST}: not a model directory")
        return path
    if not path.is_file() or not is_tarball(path):
        raise ValueError(f"model {path} is neither a model directory nor a model.tar.gz")
    target = Path(tempfile.mkdtemp(prefix="mlship-model-"))
    atexit.register(shutil.rmtree, target, True)
    with tarfile.open(path, "r:gz") as tar:
        tar.extractall(target, filter="data")  # no absolute paths, links out or devices
    for candidate in (target, *sorted(p for p in target.iterdir() if p.is_dir())):
        if (candidate / manifest_io.MANIFEST).is_file():
            return candidate
    raise ValueError(f"{path} holds no {manifest_io.MANIFEST}")


def load(path: str) -> Predictor:
    """The warmed-up predictor of a model directory or model.tar.gz, loaded once per process."""
    key = str(Path(path).resolve())
    with _LOCK:
        predictor = _LOADED.get(key)
        if predictor is None:
            predictor = predictors.load(model_dir(Path(key)), threads=1)
            predictor.warmup()  # a model that cannot answer fails here, before any task output
            _LOADED[key] = predictor
    return predictor


def _arrow_lists(kind: Any) -> pd.ArrowDtype | None:
    # Lists of plain values stay Arrow-backed: the feature pipelines flatten them without a
    # Python object per row (as the portal's batch sources do).
    return pd.ArrowDtype(kind) if arrow_list_type(kind) else None


def frame(batch: pa.RecordBatch | pa.Table) -> pd.DataFrame:
    """An Arrow batch as the DataFrame a predictor reads."""
    return batch.to_pandas(types_mapper=_arrow_lists).reset_index(drop=True)


def predict(predictor: Predictor, batch: pa.RecordBatch | pa.Table) -> Outputs:
    """The predictor's outputs for one batch (the columns /invocations answers with)."""
    return predictor.predict(Inputs(table=frame(batch)))


def to_arrow(outputs: Outputs, schema: pa.Schema | None = None) -> pa.Table:
    """Outputs as an Arrow table; with ``schema``, cast to it (every batch of a job alike)."""
    table = pa.table({name: pa.array(list(values)) for name, values in outputs.columns.items()})
    if schema is None:
        return table
    return table.select(schema.names).cast(schema)


def output_schema(outputs: Outputs) -> pa.Schema:
    """The schema of a job's results, from the outputs of a sample; a column whose sample values are
    all missing is taken as text (Spark has no column type for 'nothing seen yet')."""
    fields = []
    for f in to_arrow(outputs).schema:
        kind = pa.string() if pa.types.is_null(f.type) else f.type
        fields.append(pa.field(f.name, kind, nullable=True))
    return pa.schema(fields)


def sample_outputs(predictor: Predictor, sample: pa.Table) -> Outputs:
    """Outputs for the first rows of an input: a job's schema. An empty input is sampled with the
    model's warm-up records, given the input's columns."""
    if sample.num_rows:
        return predict(predictor, sample)
    warm = Path(getattr(predictor, "model_dir", "")) / "warmup.json"
    records = pd.read_json(warm) if warm.is_file() else pd.DataFrame()
    columns = [c for c in sample.column_names if c in records.columns]
    return predictor.predict(Inputs(table=records[columns].head(1) if columns else records.head(1)))
