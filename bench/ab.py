"""Before/after on one machine: two checkouts' `serve` side by side, measured in alternation.

Two separate runs of `python -m bench serve_gender` on a 2-core machine differ by 10-20% at
c=8 from run to run, more than the changes one wants to judge. Here both servers run at once
(same models, same payloads) and each point is measured A, B, A, B... so drift hits both alike;
the table gives each side's median and B/A.

    python -m bench.ab --base 245b3d7 [--head .] [--seconds 10] [--reps 5] [--batch-rows 300000]
                       [--defaults] [--off]

``--defaults`` serves both sides with the image's defaults (INFO logs with an access line per
request) instead of ``SM_LOG_LEVEL=WARNING``; ``--off`` measures a third side beside them, the head
with its speed layer off (``MLSHIP_FAST=false``), with no target.

``--batch-rows N`` adds the portal's batch job: N raw device records (Parquet, then JSON Lines)
through create -> check to files on a fresh `serve` of each side, in the order A B B A ..., with
both workers' model loaded by one portal call before the clock starts (a first job on a fresh
server also pays the model load, once). It reports rows/s and the server's CPU microseconds per
row: on a machine shared with other work the CPU figure moves far less than the clock.

``--base`` is a git revision (checked out into a worktree in the temporary folder) or a folder;
``--head`` defaults to this checkout. Models are trained once with the head's `train`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import BIN, ROOT, free_port, parser, save, start, stop, tree_cpu, wait_ready, wrk
from bench.serve_gender import payloads, record_payloads, train_devices, train_numeric
from training.gender import synth

POINTS = [  # (server, payload, content type, connections, path); "ping" is GET /ping
    ("numeric", "ping", "", 8, "/ping"),
    ("numeric", "csv1", "text/csv", 1, "/invocations"),
    ("numeric", "csv1", "text/csv", 8, "/invocations"),
    ("numeric", "csv1000", "text/csv", 1, "/invocations"),
    ("numeric", "csv1000", "text/csv", 8, "/invocations"),
    ("devices", "json1", "application/json", 1, "/invocations"),
    ("devices", "json1", "application/json", 8, "/invocations"),
    ("devices", "json1000", "application/json", 8, "/invocations"),
    ("devices", "portal1", "application/json", 1, "/api/providers/prediction/invoke"),
    ("devices", "portal1", "application/json", 8, "/api/providers/prediction/invoke"),
]


def checkout(rev: str) -> Path:
    folder = Path(rev)
    if folder.is_dir():
        return folder.resolve()
    target = Path(tempfile.gettempdir()) / f"mlship-ab-{rev}"  # outside the tree that is linted
    if not target.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), rev], check=True,
                       stdout=subprocess.DEVNULL)
    if (target / "setup.py").exists() and not list(target.glob("modelformat/_forest*.so")):
        # the revision's own compiled walk: without it the head's build is imported, whose functions
        # the base may not have (or have with other arguments)
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=target, check=True,
                       stdout=subprocess.DEVNULL)
    return target


def _serve(code: Path, base: Path, work: Path, name: str, env: dict[str, str]) -> tuple[Any, int]:
    port = free_port()
    proc = start([str(BIN / "serve")], {
        "PYTHONPATH": str(code), "SM_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MODEL_THREADS": "1",
        "MLAPP_DATA_DIR": str(work / name), "MLAPP_JOB_WORKER": "false", **env}, work / f"{name}.log")
    return proc, port


def batch(sides: dict[str, Path], base: Path, work: Path, rows: int, reps: int) -> dict[str, Any]:
    """The portal batch job on each side, alternating A B B A; medians of rows/s and CPU us/row."""
    import shutil

    from bench.portal import _dataset

    repo = work / "ab-batch-models"
    if not (repo / "gender" / "v1" / "model.json").exists():
        shutil.copytree(base / "model", repo / "gender" / "v1", dirs_exist_ok=True)
    data = _dataset(work, rows)
    record = json.loads(data["jsonl"].open().readline())
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for rep in range(reps):
        order = list(sides.items()) if rep % 2 == 0 else list(sides.items())[::-1]
        for side, code in order:
            for fmt, path in data.items():
                got = _batch_job(code, base, repo, work / f"ab-batch-{side}-{fmt}", path, record)
                runs.setdefault((side, fmt), []).append(got)
                print(f"  batch {fmt:<7} {side}: {got[0]:,.0f} rows/s, {got[1]:.1f} us CPU/row", flush=True)
    out: dict[str, Any] = {}
    for fmt in data:
        med = {side: {"rows_per_s": statistics.median(r[0] for r in runs[(side, fmt)]),
                      "cpu_us_per_row": statistics.median(r[1] for r in runs[(side, fmt)])} for side in sides}
        out[fmt] = {**med, "ratio": med["head"]["rows_per_s"] / med["base"]["rows_per_s"],
                    "cpu_ratio": med["head"]["cpu_us_per_row"] / med["base"]["cpu_us_per_row"]}
        sides_text = " | ".join(f"{side} {m['rows_per_s']:,.0f} rows/s {m['cpu_us_per_row']:.1f} us/row"
                                for side, m in med.items())
        print(f"batch {fmt:<7} {sides_text} | head/base {out[fmt]['ratio']:.3f}, "
              f"CPU {out[fmt]['cpu_ratio']:.3f}", flush=True)
    return out


def _batch_job(code: Path, base: Path, repo: Path, folder: Path, path: Path,
               record: dict[str, Any]) -> tuple[float, float]:
    """One job on a fresh `serve` of ``code``: rows/s from create to SUCCEEDED, server CPU us/row."""
    import shutil

    from bench.portal import _call

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    port = free_port()
    proc = start([str(BIN / "serve")], {
        "PYTHONPATH": str(code), "SM_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SM_LOG_LEVEL": "WARNING",
        "MLAPP_DATABASE_URL": f"sqlite:///{folder / 'store.db'}", "MLAPP_MODEL_REPOSITORY": str(repo),
        "MLAPP_DATA_DIR": str(folder / "data"), "MLAPP_ALLOWED_ROOTS": f"{path.parent}:{folder}"},
        folder / "serve.log")
    api = "/api/providers/prediction"
    try:
        wait_ready(port)
        for _ in range(4):  # reaches both workers: each loads the model version once
            _call(port, f"{api}/invoke", {"model": "gender", "input": [record]})
        cpu, started = tree_cpu(proc.pid), time.monotonic()
        pid = _call(port, f"{api}/create", {"model": "gender", "input": {"location": str(path)},
                                            "output_location": str(folder / "results")})["prediction_id"]
        while (state := _call(port, f"{api}/check?prediction_id={pid}&limit=1"))["status"] not in (
                "SUCCEEDED", "FAILED", "CANCELLED"):
            time.sleep(0.2)
        seconds, cpu = time.monotonic() - started, tree_cpu(proc.pid) - cpu
        assert state["status"] == "SUCCEEDED", state
        return state["rows_done"] / seconds, cpu / state["rows_done"] * 1e6
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__, reps=5)
    options.add_argument("--base", required=True)
    options.add_argument("--head", default=str(ROOT))
    options.add_argument("--batch-rows", type=int, default=0)
    options.add_argument("--only-batch", action="store_true", help="skip the online points")
    options.add_argument("--defaults", action="store_true", help="the image's defaults (INFO logs)")
    options.add_argument("--off", action="store_true", help="also the head with MLSHIP_FAST=false")
    args = options.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    models = {"numeric": train_numeric(work, 200_000), "devices": train_devices(work, 20000)}
    bodies = {**payloads(work), **record_payloads(work)}
    record = json.loads(synth.generate(1, seed=9).drop(columns=["gender"]).to_json(orient="records"))
    bodies["portal1"] = work / "ab-portal.json"
    bodies["portal1"].write_text(json.dumps({"model": "gender", "input": record}))
    sides = {"base": checkout(args.base), "head": Path(args.head).resolve()}
    results: dict[str, Any] = {"base": str(sides["base"]), "head": str(sides["head"]),
                               "seconds": args.seconds, "reps": args.reps}
    if not args.only_batch:
        env = {} if args.defaults else {"SM_LOG_LEVEL": "WARNING"}
        envs = {"base": env, "head": env}
        if args.off:
            sides["head-off"] = sides["head"]
            envs["head-off"] = {**env, "MLSHIP_FAST": "false"}
        results["defaults"] = args.defaults
        results["points"] = online(sides, models, bodies, work, args.seconds, args.reps, envs)
    if args.batch_rows:
        results["batch"] = batch(sides, models["devices"], work, args.batch_rows, args.reps)
    print(f"results: {save('ab', results)}")
    return 0


def online(sides: dict[str, Path], models: dict[str, Path], bodies: dict[str, Path], work: Path,
           seconds: int, reps: int, envs: dict[str, dict[str, str]]) -> dict[str, Any]:
    procs, ports = [], {}
    points: dict[str, Any] = {}
    try:
        for side, code in sides.items():
            for model, base in models.items():
                proc, port = _serve(code, base, work, f"ab-{side}-{model}", envs[side])
                procs.append(proc)
                ports[(side, model)] = port
        for port in ports.values():
            wait_ready(port)
        off = "head-off" in sides
        print(f"{'point':<34} {'base req/s':>11} {'head req/s':>11} {'head/base':>9}"
              f" {'base p99':>9} {'head p99':>9}" + (f" {'off req/s':>10} {'off/base':>8}" if off else ""))
        for model, payload, ctype, conns, path in POINTS:
            runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
            for _ in range(reps):
                for side in sides:
                    runs[side].append(wrk(ports[(side, model)], bodies.get(payload), ctype, conns, seconds,
                                          path=path))
            med = {s: {k: statistics.median(r[k] for r in v) for k in ("rps", "p99")}
                   for s, v in runs.items()}
            ratio = med["head"]["rps"] / med["base"]["rps"]
            name = f"{payload} c={conns} {path.rsplit('/', 1)[-1]}"
            points[name] = {**med, "ratio": ratio}
            line = (f"{name:<34} {med['base']['rps']:>11.1f} {med['head']['rps']:>11.1f} {ratio:>9.3f}"
                    f" {med['base']['p99']:>8.2f}ms {med['head']['p99']:>8.2f}ms")
            if off:
                points[name]["off_ratio"] = med["head-off"]["rps"] / med["base"]["rps"]
                line += f" {med['head-off']['rps']:>10.1f} {points[name]['off_ratio']:>8.3f}"
            print(line, flush=True)
    finally:
        for proc in procs:
            stop(proc)
    return points


if __name__ == "__main__":
    raise SystemExit(main())
