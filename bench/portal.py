"""Portal benchmark: recorded online predictions vs plain /invocations, and a 1M-row batch job.

1. Single-record gender requests (raw device JSON), wrk closed loop, REPS runs each (medians):
   plain POST /invocations, then POST /api/providers/prediction/invoke (every call recorded in
   the store), on SQLite and on PostgreSQL. Target (issue #4): invoke >= 70% of plain throughput.
2. 1,000,000 raw device records (Parquet and JSON Lines) through create -> check, results written
   to an output location: rows/s from created to SUCCEEDED, and the serve process tree's peak RSS
   increase over idle. Targets: >= 50,000 rows/s, <= 500 MB.

Model: the 200-tree XGBoost gender model of bench.serve_gender, 2 gunicorn workers.

    python -m bench.portal [--seconds 10] [--reps 3] [--rows 1000000] [--only online|batch]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.harness import BIN, RESULTS, free_port, save, start, stop, tree_rss, wait_ready, wrk
from bench.serve_gender import train_devices
from training.gender import synth

PG = os.environ.get("MLSHIP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _call(port: int, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return dict(json.loads(resp.read()))


def _fresh_pg_schema() -> str:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_portal CASCADE")
        conn.execute("CREATE SCHEMA bench_portal")
    return f"{PG}?options=-csearch_path%3Dbench_portal"


def _serve(base: Path, repo: Path, db_url: str, work: Path, name: str, **env: str) -> tuple[Any, int]:
    port = free_port()
    proc = start([str(BIN / "serve")], {
        "SM_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "MLAPP_DATABASE_URL": db_url, "MLAPP_MODEL_REPOSITORY": str(repo), "MLAPP_DATA_DIR": str(work / name),
        "MLAPP_ALLOWED_ROOTS": str(work), "SM_LOG_LEVEL": "WARNING", **env}, work / f"{name}.log")
    wait_ready(port)
    return proc, port


def online(base: Path, repo: Path, work: Path, seconds: int, reps: int) -> dict[str, Any]:
    record = json.loads(synth.generate(1, seed=9).drop(columns=["gender"]).to_json(orient="records"))
    plain = work / "one.json"
    plain.write_text(json.dumps(record))
    portal = work / "one-portal.json"
    portal.write_text(json.dumps({"model": "gender", "input": record}))
    out: dict[str, Any] = {}
    for store, url in (("sqlite", f"sqlite:///{work / 'online.db'}"), ("postgresql", _fresh_pg_schema())):
        if store == "sqlite":
            (work / "online.db").unlink(missing_ok=True)
        proc, port = _serve(base, repo, url, work, f"online-{store}", MLAPP_JOB_WORKER="false")
        try:
            for conns in (1, 8):
                runs: dict[str, list[dict[str, float]]] = {"invocations": [], "invoke_recorded": []}
                for _ in range(reps):  # interleaved, so drift hits both alike
                    runs["invocations"].append(wrk(port, plain, "application/json", conns, seconds))
                    runs["invoke_recorded"].append(wrk(port, portal, "application/json", conns, seconds,
                                                       path="/api/providers/prediction/invoke"))
                point: dict[str, Any] = {
                    k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")}
                    for k, v in runs.items()}
                point["ratio"] = point["invoke_recorded"]["rps"] / point["invocations"]["rps"]
                out[f"{store}_c{conns}"] = point
                print(f"  {store:<10} c={conns}: /invocations {point['invocations']['rps']:7.0f} req/s "
                      f"p99 {point['invocations']['p99']:.2f} ms | invoke+record "
                      f"{point['invoke_recorded']['rps']:7.0f} req/s "
                      f"p99 {point['invoke_recorded']['p99']:.2f} ms | "
                      f"ratio {point['ratio']:.0%} (target >= 70%)", flush=True)
            recorded = _call(port, "/api/providers/prediction/list?kind=online&limit=1000")["predictions"]
            out[f"{store}_recorded_last_1000"] = len(recorded)
        finally:
            stop(proc)
    return out


def _dataset(work: Path, rows: int) -> dict[str, Path]:
    paths = {"parquet": work / f"devices-{rows}.parquet", "jsonl": work / f"devices-{rows}.jsonl"}
    if all(p.exists() for p in paths.values()):
        return paths
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.monotonic()
    block = 100_000
    with pq.ParquetWriter(_tmp(paths["parquet"]), _schema(), compression="snappy") as pw, \
            _tmp(paths["jsonl"]).open("w") as jw:
        for seed, first in enumerate(range(0, rows, block)):
            frame = synth.generate(min(block, rows - first), seed=1000 + seed).drop(columns=["gender"])
            pw.write_table(pa.Table.from_pandas(frame, schema=_schema(), preserve_index=False))
            jw.write(frame.to_json(orient="records", lines=True))
            print(f"  generating {rows:,} device records: {first + len(frame):,}", end="\r", flush=True)
    for p in paths.values():
        _tmp(p).rename(p)
    print(f"\n  generated in {time.monotonic() - started:.0f}s", flush=True)
    return paths


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _schema() -> Any:
    import pyarrow as pa

    strings = pa.list_(pa.string())
    floats = pa.list_(pa.float64())
    return pa.schema([("device_id", pa.string()), ("phone_brand", pa.string()), ("device_model", pa.string()),
                      ("installed_apps", strings), ("active_apps", strings), ("app_categories", strings),
                      ("event_timestamps", strings), ("event_lats", floats), ("event_lons", floats)])


def batch(base: Path, repo: Path, work: Path, rows: int) -> dict[str, Any]:
    data = _dataset(work, rows)
    out: dict[str, Any] = {}
    for fmt, path in data.items():
        (work / "batch.db").unlink(missing_ok=True)
        results = work / f"results-{fmt}"
        shutil.rmtree(results, ignore_errors=True)
        proc, port = _serve(base, repo, f"sqlite:///{work / 'batch.db'}", work, f"batch-{fmt}")
        try:
            time.sleep(2)  # let both workers finish warming up before the idle reading
            idle = tree_rss(proc.pid)
            peak = [idle]
            done = threading.Event()

            def sample(peak: list[int] = peak, done: threading.Event = done, root: int = proc.pid) -> None:
                while not done.wait(0.1):
                    peak[0] = max(peak[0], tree_rss(root))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            created = _call(port, "/api/providers/prediction/create", {
                "model": "gender", "input": {"location": str(path)}, "output_location": str(results)})
            pid, last = created["prediction_id"], -1.0
            while True:
                state = _call(port, f"/api/providers/prediction/check?prediction_id={pid}&limit=1")
                if state["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    break
                if time.monotonic() - last > 5:
                    last = time.monotonic()
                    print(f"  {fmt}: {state['status']} {state['rows_done']:,} rows "
                          f"({time.monotonic() - started:.0f}s)", flush=True)
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            done.set()
            sampler.join()
            assert state["status"] == "SUCCEEDED", state
            written = sum(1 for part in results.glob("part-*.jsonl") for _ in part.open())
            point = {"rows": state["rows_done"], "rows_written": written, "seconds": elapsed,
                     "rows_per_s": state["rows_done"] / elapsed,
                     "idle_rss_mb": idle / 2**20, "peak_rss_increase_mb": (peak[0] - idle) / 2**20}
            out[fmt] = point
            print(f"  batch {fmt:<7}: {point['rows']:,} rows in {elapsed:.1f}s = "
                  f"{point['rows_per_s']:,.0f} rows/s "
                  f"(target >= 50,000); peak RSS +{point['peak_rss_increase_mb']:.0f} MB over idle "
                  f"{point['idle_rss_mb']:.0f} MB (target <= 500)", flush=True)
        finally:
            stop(proc)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.portal")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["online", "batch"])
    args = parser.parse_args(argv)
    work = RESULTS / "work" / "portal"
    work.mkdir(parents=True, exist_ok=True)
    base = train_devices(RESULTS / "work", 50_000)
    repo = work / "models"
    if not (repo / "gender" / "v1" / "model.json").exists():
        shutil.copytree(base / "model", repo / "gender" / "v1", dirs_exist_ok=True)
    result: dict[str, Any] = {"model": "xgboost 200 trees depth 6, gender pipeline", "workers": 2}
    if args.only in (None, "online"):
        result["online"] = online(base, repo, work, args.seconds, args.reps)
    if args.only in (None, "batch"):
        result["batch"] = batch(base, repo, work, args.rows)
    print(f"  saved {save('portal', result)}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
