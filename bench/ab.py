"""Before/after on one machine: two checkouts' `serve` side by side, measured in alternation.

Two separate runs of `python -m bench serve_gender` on a 2-core machine differ by 10-20% at
c=8 from run to run, more than the changes one wants to judge. Here both servers run at once
(same models, same payloads) and each point is measured A, B, A, B... so drift hits both alike;
the table gives each side's median and B/A.

    python -m bench.ab --base 245b3d7 [--head .] [--seconds 10] [--reps 5]

``--base`` is a git revision (checked out into a worktree in the temporary folder) or a folder;
``--head`` defaults to this checkout. Models are trained once with the head's `train`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import BIN, ROOT, free_port, parser, save, start, stop, wait_ready, wrk
from bench.serve_gender import payloads, record_payloads, train_devices, train_numeric
from training.gender import synth

POINTS = [  # (server, payload, content type, connections, path)
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
    return target


def _serve(code: Path, base: Path, work: Path, name: str) -> tuple[Any, int]:
    port = free_port()
    proc = start([str(BIN / "serve")], {
        "PYTHONPATH": str(code), "SM_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MODEL_THREADS": "1", "SM_LOG_LEVEL": "WARNING",
        "MLAPP_DATA_DIR": str(work / name), "MLAPP_JOB_WORKER": "false"}, work / f"{name}.log")
    return proc, port


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__, reps=5)
    options.add_argument("--base", required=True)
    options.add_argument("--head", default=str(ROOT))
    args = options.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    models = {"numeric": train_numeric(work, 200_000), "devices": train_devices(work, 20000)}
    bodies = {**payloads(work), **record_payloads(work)}
    record = json.loads(synth.generate(1, seed=9).drop(columns=["gender"]).to_json(orient="records"))
    bodies["portal1"] = work / "ab-portal.json"
    bodies["portal1"].write_text(json.dumps({"model": "gender", "input": record}))
    sides = {"base": checkout(args.base), "head": Path(args.head).resolve()}
    procs, ports = [], {}
    try:
        for side, code in sides.items():
            for model, base in models.items():
                proc, port = _serve(code, base, work, f"ab-{side}-{model}")
                procs.append(proc)
                ports[(side, model)] = port
        for port in ports.values():
            wait_ready(port)
        results: dict[str, Any] = {"base": str(sides["base"]), "head": str(sides["head"]),
                                   "seconds": args.seconds, "reps": args.reps, "points": {}}
        print(f"{'point':<34} {'base req/s':>11} {'head req/s':>11} {'head/base':>9}"
              f" {'base p99':>9} {'head p99':>9}")
        for model, payload, ctype, conns, path in POINTS:
            runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
            for _ in range(args.reps):
                for side in ("base", "head"):
                    runs[side].append(wrk(ports[(side, model)], bodies[payload], ctype, conns, args.seconds,
                                          path=path))
            med = {s: {k: statistics.median(r[k] for r in v) for k in ("rps", "p99")}
                   for s, v in runs.items()}
            ratio = med["head"]["rps"] / med["base"]["rps"]
            name = f"{payload} c={conns} {path.rsplit('/', 1)[-1]}"
            results["points"][name] = {**med, "ratio": ratio}
            print(f"{name:<34} {med['base']['rps']:>11.1f} {med['head']['rps']:>11.1f} {ratio:>9.3f}"
                  f" {med['base']['p99']:>8.2f}ms {med['head']['p99']:>8.2f}ms", flush=True)
        print(f"results: {save('ab', results)}")
    finally:
        for proc in procs:
            stop(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
