"""The batch-prediction job for spark-submit: read records, score them with the model, write Parquet.

    spark-submit --master spark://HOST:7077 inference/spark/job.py \\
        --model /models/gender/model.tar.gz --input s3a://bucket/devices/ --format parquet \\
        --output s3a://bucket/scored/ [--partition-by label] [--status-file status.json]
    python -m inference.spark.job --remote sc://HOST:15002 ...   # Spark Connect

Input: Parquet, CSV (with a header; lists '|'-joined, as /invocations reads them) or JSON Lines, a
file or a folder, any path Spark reads (local, s3a://, hdfs://; s3:// on EMR). Output: Parquet with
the columns /invocations answers with, one part file per partition (and a folder per value of
--partition-by). Malformed CSV or JSON fails the job instead of passing null rows on.

Progress goes to the log every few seconds (rows scored, partitions done) and, with --status-file,
to a JSON file the portal's spark engine reads: ``{"state", "rows_done", "partitions_done",
"partitions_total"}`` while running, then ``{"state": "SUCCEEDED", "rows": N}`` or ``{"state":
"FAILED", "error": "..."}``. The exit code is 0 on success, 1 when the job failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from container import logs

log = logging.getLogger("inference.spark.job")
FORMATS = ("parquet", "csv", "jsonl")
PROGRESS_SECONDS = 2.0
JOB_GROUP = "mlship-predict"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="inference.spark.job", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model directory or model.tar.gz")
    parser.add_argument("--input", required=True, help="file or folder of records")
    parser.add_argument("--format", choices=FORMATS, help="input format (default: from the name)")
    parser.add_argument("--output", required=True, help="folder for the Parquet results")
    parser.add_argument("--partition-by", default="", help="comma-separated result columns")
    parser.add_argument("--partitions", type=int, default=0, help="repartition the input first")
    parser.add_argument("--mode", choices=("overwrite", "errorifexists"), default="overwrite")
    parser.add_argument("--status-file", type=Path, help="JSON progress file (the portal reads it)")
    parser.add_argument("--remote", help="Spark Connect URL (sc://...) instead of spark-submit's master")
    args = parser.parse_args(argv)
    if args.format is None:
        try:
            args.format = input_format(args.input)
        except ValueError as exc:
            parser.error(str(exc))
    return args


def input_format(name: str) -> str:
    stem = name.rstrip("/").removesuffix(".gz")
    for suffix, fmt in ((".parquet", "parquet"), (".csv", "csv"), (".jsonl", "jsonl"),
                        (".ndjson", "jsonl"), (".json", "jsonl")):
        if stem.endswith(suffix):
            return fmt
    raise ValueError(f"cannot tell the format of {name!r}; give --format {', '.join(FORMATS)}")


class Status:
    """The --status-file, replaced atomically so a reader never sees half a document."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, **values: Any) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(values), encoding="utf-8")
        os.replace(tmp, self.path)


class Progress:
    """Logs (and writes to the status file) the rows scored and partitions done, every few seconds."""

    def __init__(self, spark: Any, status: Status, counter: Any) -> None:
        self.context = getattr(spark, "sparkContext", None) if counter is not None else None
        self.status, self.counter = status, counter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def snapshot(self) -> dict[str, int]:
        rows = int(self.counter.value) if self.counter is not None else 0
        done = total = 0
        if self.context is not None:
            tracker = self.context.statusTracker()
            for job_id in tracker.getJobIdsForGroup(JOB_GROUP):
                job = tracker.getJobInfo(job_id)
                # A job's last stage has one task per partition it produces; earlier stages may
                # be skipped (a shuffle computed before) and would never complete.
                stage = tracker.getStageInfo(max(job.stageIds)) if job is not None and job.stageIds else None
                if stage is not None:
                    done += stage.numCompletedTasks
                    total += stage.numTasks
        return {"rows_done": rows, "partitions_done": done, "partitions_total": total}

    def report(self) -> dict[str, int]:
        snap = self.snapshot()
        log.info("progress: rows=%d partitions=%d/%d", snap["rows_done"], snap["partitions_done"],
                 snap["partitions_total"])
        self.status.write(state="RUNNING", **snap)
        return snap

    def _run(self) -> None:
        while not self._stop.wait(PROGRESS_SECONDS):
            self.report()

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def read(spark: Any, path: str, fmt: str) -> Any:
    reader = spark.read
    if fmt == "parquet":
        return reader.parquet(path)
    if fmt == "csv":
        return reader.option("header", True).option("mode", "FAILFAST").csv(path)
    return reader.option("mode", "FAILFAST").json(path)


ERROR_CLASS = re.compile(r"\[[A-Z][A-Z0-9_.]+\][^\n]*")
PYTHON_ERROR = re.compile(r"^(?:inference\.errors\.)?(\w+(?:Error|Input|Found)): (.*)$", re.MULTILINE)


def error_message(exc: BaseException) -> str:
    """One line for the portal: Spark's error class and message (a read error names the file; the
    one naming a file wins), else the last error line of a Python worker's traceback, else the
    first line of the error."""
    text = str(exc).strip()
    classed = [m.group(0).strip() for m in ERROR_CLASS.finditer(text)]
    if classed:
        line = next((c for c in classed if "file" in c.lower()), classed[0])
        return re.sub(r"\s*SQLSTATE: \w+\.?$", "", line)[:1000]
    python = [f"{m.group(1)}: {m.group(2)}" for m in PYTHON_ERROR.finditer(text)]
    if python:
        return python[-1][:1000]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:1000]


def session(remote: str | None) -> Any:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("mlship-predict")
    if remote:
        builder = builder.remote(remote)
    return builder.getOrCreate()


def run(args: argparse.Namespace) -> int:
    from inference.spark.udf import predict

    status = Status(args.status_file)
    status.write(state="RUNNING", rows_done=0, partitions_done=0, partitions_total=0)
    spark = session(args.remote)
    context = getattr(spark, "sparkContext", None) if not args.remote else None
    try:
        if context is not None:
            context.setJobGroup(JOB_GROUP, f"score {args.input} with {args.model}", interruptOnCancel=True)
        counter = context.accumulator(0) if context is not None else None
        df = read(spark, args.input, args.format)
        if args.partitions > 0:
            df = df.repartition(args.partitions)
        scored = predict(df, args.model, counter)
        writer = scored.write.mode(args.mode)
        partition_by = [c.strip() for c in args.partition_by.split(",") if c.strip()]
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        started = time.monotonic()
        with Progress(spark, status, counter) as progress:
            writer.parquet(args.output)
            final = progress.report()
        rows = spark.read.parquet(args.output).count()  # from the Parquet footers: exact, and cheap
        seconds = time.monotonic() - started
        log.info("done: rows=%d partitions=%d seconds=%.1f rows_per_second=%.0f", rows,
                 final["partitions_total"], seconds, rows / max(seconds, 1e-9))
        status.write(state="SUCCEEDED", rows=rows, rows_done=rows, seconds=round(seconds, 3),
                     partitions_done=final["partitions_done"], partitions_total=final["partitions_total"])
        return 0
    except Exception as exc:
        message = error_message(exc)
        log.error("job failed: %s", message)
        status.write(state="FAILED", error=message)
        return 1
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    # JSON lines on stderr, as every other command of the image logs; py4j's gateway chatter hidden.
    logs.configure("INFO")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
