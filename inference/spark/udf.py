"""The library entry for users' own Spark jobs: a model scoring a DataFrame, as an Arrow UDF.

    from inference.spark.udf import predict
    scored = predict(devices_df, "/models/gender/model.tar.gz")   # or a model directory

Like MLflow's ``spark_udf``, the model travels by path: a model.tar.gz is shipped to the executors
with ``addFile`` (any path or URI Spark reads: local, s3a://, hdfs://); a model directory must be
visible at the same path on every executor (a shared volume, the image). The input's columns are
the fields /invocations reads (raw device records, user/item pairs); the result has the columns
/invocations answers with, one row per input row, computed by the same family predictor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark import SparkFiles
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema

from inference.spark import scoring

SAMPLE_ROWS = 16  # rows the driver scores to learn the output schema


def _local(ref: tuple[str, str]) -> str:
    kind, where = ref
    return SparkFiles.get(where) if kind == "sparkfile" else where


def _context(df: DataFrame) -> Any:
    """The SparkContext, or None for a Spark Connect session (whose property raises instead)."""
    try:
        return df.sparkSession.sparkContext
    except Exception:  # PySparkNotImplementedError on Spark Connect
        return None


def _ship(df: DataFrame, model: str) -> tuple[str, str]:
    """How executors find the model: ('sparkfile', name) for a tarball added to the job as an archive
    (Spark unpacks it once per executor, under that name), else ('path', path). Spark Connect
    sessions have no SparkContext: there the path is used as it is."""
    context = _context(df)
    if scoring.is_tarball(model) and context is not None:
        name = "mlship-model-" + hashlib.sha256(model.encode()).hexdigest()[:12]
        if not any(name in added for added in context.listArchives):  # a second add is an error
            context.addArchive(f"{model}#{name}")
        return "sparkfile", name
    return "path", model


def _score(ref: tuple[str, str], schema: pa.Schema, counter: Any
           ) -> Any:
    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        predictor = scoring.load(_local(ref))
        for batch in batches:
            if not batch.num_rows:
                continue
            table = scoring.to_arrow(scoring.predict(predictor, batch), schema)
            if counter is not None:
                counter.add(batch.num_rows)
            yield from table.to_batches()

    return score


def output_schema(df: DataFrame, model: str) -> pa.Schema:
    """The result columns for ``df``: the driver scores its first rows (a user error in them, such as
    a missing field, is raised here, before the job starts)."""
    local = model if not scoring.is_tarball(model) or Path(model).is_file() else None
    if local is None:
        raise ValueError(f"model {model} must be readable by the driver to learn its output columns")
    predictor = scoring.load(local)
    return scoring.output_schema(scoring.sample_outputs(predictor, df.limit(SAMPLE_ROWS).toArrow()))


def predict(df: DataFrame, model: str, rows_counter: Any = None) -> DataFrame:
    """``df`` scored by ``model`` (a model directory or model.tar.gz); ``rows_counter``: an optional
    accumulator counting the rows scored (the job command's progress)."""
    schema = output_schema(df, str(model))
    ref = _ship(df, str(model))
    return df.mapInArrow(_score(ref, schema, rows_counter), from_arrow_schema(schema))
