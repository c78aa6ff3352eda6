"""Spark benchmark: one raw device-record batch job on Spark with 1 and 2 workers, beside the local engine.

Data: ROWS raw device records in Parquet (8 files, row groups of 100k), made from SEED_ROWS (20k) records
of the project's generator (training.gender.synth) repeated with fresh device ids (generating 10M
records one by one would take longer than scoring them), cached under --data-dir.

- local: the portal's local engine on the same Parquet, in a `serve` process (bench.portal's setup):
  create -> SUCCEEDED, rows/s.
- spark-1, spark-2: the job command (spark-submit) on a loopback standalone cluster of 1 or 2
  workers, 1 core and one executor each (--executor-memory): rows/s from submit to exit (JVM and
  executor start-up included) and over the scoring-and-writing stage alone (the job's own clock),
  and each executor's peak memory (its JVM plus its Python workers, resident set).

Model: the 200-tree XGBoost gender model of bench.serve_gender.

    python -m bench.spark_batch [--rows 10000000] [--data-dir DIR] [--workers 1,2] [--skip-local]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, children, save, tree_rss
from bench.portal import _call, _schema, _serve
from bench.serve_gender import train_devices
from inference.spark.cluster import LocalCluster, session_conf
from inference.spark.submit import command
from training.gender import synth

SEED_ROWS = 20_000
FILES = 8


def dataset(folder: Path, rows: int) -> Path:
    """ROWS records in FILES Parquet files under ``folder/devices-ROWS`` (made once, then reused)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = folder / f"devices-{rows}"
    if (target / "_COMPLETE").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    started = time.monotonic()
    seed = pa.Table.from_pandas(synth.generate(min(rows, SEED_ROWS), seed=1000).drop(columns=["gender"]),
                                schema=_schema(), preserve_index=False)
    per_file = -(-rows // FILES)
    written = 0
    for number in range(FILES):
        with pq.ParquetWriter(target / f"part-{number:02d}.parquet", _schema(), compression="snappy") as pw:
            in_file = 0
            while in_file < per_file and written < rows:
                n = min(seed.num_rows, per_file - in_file, rows - written)
                ids = pa.array([str(written + k) for k in range(n)])
                pw.write_table(seed.slice(0, n).set_column(0, "device_id", ids), row_group_size=100_000)
                in_file += n
                written += n
        print(f"  data: {written:,} / {rows:,} rows", end="\r", flush=True)
    (target / "_COMPLETE").write_text(str(rows))
    print(f"\n  data made in {time.monotonic() - started:.0f}s: {target}", flush=True)
    return target


def local_engine(base: Path, repo: Path, work: Path, data: Path) -> dict[str, Any]:
    """The portal's local engine: one job in a `serve` process (2 workers; a job runs in one)."""
    results = work / "local-results"
    shutil.rmtree(results, ignore_errors=True)
    (work / "local.db").unlink(missing_ok=True)
    proc, port = _serve(base, repo, f"sqlite:///{work / 'local.db'}", work, "local",
                        MLAPP_ALLOWED_ROOTS=f"{work}:{data}")
    started = time.monotonic()
    try:
        # The local engine reads one file per job: one job per file, all at once, so that both
        # `serve` workers run jobs (its capacity on this machine's cores).
        pids = [_call(port, "/api/providers/prediction/create", {
            "model": "gender", "input": {"location": str(part)},
            "output_location": str(results / part.stem)})["prediction_id"]
            for part in sorted(data.glob("part-*.parquet"))]
        last = 0.0
        while True:
            states = [_call(port, f"/api/providers/prediction/check?prediction_id={pid}&limit=1")
                      for pid in pids]
            rows = sum(int(s["rows_done"] or 0) for s in states)
            if all(s["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") for s in states):
                break
            if time.monotonic() - last > 10:
                last = time.monotonic()
                print(f"  local: {rows:,} rows ({last - started:.0f}s)", flush=True)
            time.sleep(0.5)
        assert all(s["status"] == "SUCCEEDED" for s in states), states
    finally:
        from bench.harness import stop

        stop(proc)
    seconds = time.monotonic() - started
    return {"rows": rows, "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds)}


def _executors(cluster: LocalCluster) -> list[int]:
    """Pids of the executor JVMs the workers started (the children of each worker JVM that run
    Spark's executor backend: a worker also starts short-lived helpers, which are not executors)."""
    return [child for pid in cluster.worker_pids for child in children(pid) if _is_executor(child)]


def _is_executor(pid: int) -> bool:
    try:
        return b"CoarseGrainedExecutorBackend" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it has exited
        return False


def spark_engine(model: Path, data: Path, work: Path, workers: int, executor_memory: str) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"spark-{workers}-", dir=work))
    out = work / f"spark-{workers}-results"
    status = work / f"spark-{workers}-status.json"
    shutil.rmtree(out, ignore_errors=True)
    root = str(Path(__file__).resolve().parents[1])
    with LocalCluster(base, workers=workers, cores=1, memory="2g", pythonpath=root) as cluster:
        conf = session_conf(cluster.master_url, workers, executor_memory)
        conf.pop("spark.master")
        argv = command(cluster.master_url, ["--model", str(model), "--input", str(data), "--format",
                                            "parquet", "--output", str(out), "--status-file", str(status)],
                       conf)
        peaks: dict[int, int] = {}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                for pid in _executors(cluster):
                    rss = tree_rss(pid)
                    if rss:  # 0: it exited between the listing and the reading
                        peaks[pid] = max(peaks.get(pid, 0), rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        with (work / f"spark-{workers}-driver.log").open("wb") as log:
            finished = subprocess.run(argv, env=cluster.env, cwd=base, stdout=log, stderr=subprocess.STDOUT,
                                      check=False)
        wall = time.monotonic() - started
        done.set()
        sampler.join()
    shutil.rmtree(base, ignore_errors=True)
    state = json.loads(status.read_text())
    assert finished.returncode == 0 and state["state"] == "SUCCEEDED", state
    rows = int(state["rows"])
    point = {"workers": workers, "rows": rows, "wall_seconds": round(wall, 1),
             "rows_per_s_wall": round(rows / wall), "job_seconds": state["seconds"],
             "rows_per_s_job": round(rows / state["seconds"]),
             "rows_per_s_per_core": round(rows / state["seconds"] / workers),
             "partitions": state["partitions_total"], "executor_memory": executor_memory,
             "executor_peak_rss_mb": sorted(round(v / 2**20) for v in peaks.values())}
    print(f"  spark-{workers}: {rows:,} rows, {point['rows_per_s_job']:,} rows/s scoring+writing "
          f"({point['rows_per_s_wall']:,} rows/s wall, {wall:.0f}s); executor peak RSS "
          f"{point['executor_peak_rss_mb']} MB", flush=True)
    return point


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark_batch")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("MLSHIP_BENCH_DATA", RESULTS / "work" / "spark")))
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--executor-memory", default="1g")
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_known_args(argv)[0]  # `python -m bench` passes every suite's options
    work = RESULTS / "work" / "spark"
    work.mkdir(parents=True, exist_ok=True)
    data = dataset(args.data_dir, args.rows)
    base = train_devices(RESULTS / "work", 50_000)
    repo = work / "models"
    if not (repo / "gender" / "v1" / "model.json").exists():
        shutil.copytree(base / "model", repo / "gender" / "v1", dirs_exist_ok=True)
    result: dict[str, Any] = {"rows": args.rows, "model": "xgboost 200 trees depth 6, gender pipeline",
                              "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    for workers in (int(w) for w in args.workers.split(",") if w):
        result[f"spark_{workers}"] = spark_engine(base / "model", data, work, workers, args.executor_memory)
    if not args.skip_local:
        result["local"] = local_engine(base, repo, work, data)
        print(f"  local: {result['local']['rows_per_s']:,} rows/s", flush=True)
    print(f"  saved {save('spark_batch', result)}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
