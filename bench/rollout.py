"""The VM rollout under load: three VMs of the image behind nginx (tests/lab.py: a real sshd, a
real nginx, the shared PostgreSQL), a steady load through nginx, then `deploy vms` to a new
release. Reports requests, failures and p99 before the rollout beside during it, and its seconds.

    python -m bench rollout [--seconds 10] [--reps 1]   (needs podman, sshd, nginx, PostgreSQL)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import BIN, parser, report
from deploy.vms.checks import Watch
from deploy.vms.containers import Release
from deploy.vms.rollout import Options
from deploy.vms.site import deploy_vms
from tests.lab import Lab, Load, pg_schema, summary
from training.gender import synth

PG = os.environ.get("MLSHIP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IMAGE = os.environ.get("MLSHIP_IMAGE", "mlship:test")


def _train(work: Path, hyperparameters: dict[str, str]) -> Path:
    """A small gender model trained with `train` on synthetic devices, readable by the image's uid."""
    base = work / "opt_ml"
    synth.write(synth.generate(2000, seed=3), base / "input/data/train/d.csv", "csv")
    (base / "input/config").mkdir(parents=True, exist_ok=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hyperparameters))
    subprocess.run([str(BIN / "train")], env={**os.environ, "SM_BASE_DIR": str(base)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return base / "model"


def _readable(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def run_once(lab: Lab, v1: Path, v2: Path, db: str, seconds: float) -> dict[str, Any]:
    env = {"MLAPP_DATABASE_URL": db, "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MLAPP_DATA_DIR": "/tmp/mlapp"}

    def release(label: str, model: Path) -> Release:
        return Release(label=label, image=IMAGE, model_dir=str(model), environment=env, pull=False)

    options = Options(ready_seconds=90, watch=Watch(seconds=2, max_error_rate=0.0, interval=0.25))
    deploy_vms(release=release("r1", v1), hosts=lab.hosts, transport=lab.transport(), nginx=lab.nginx(),
               options=options)
    body = json.dumps(json.loads(synth.generate(2, seed=5).drop(columns=["gender"])
                                 .to_json(orient="records"))).encode()
    load = Load(lab.url, lambda n: ("/invocations", body), threads=8, rate=8.5).start()
    try:
        time.sleep(seconds)
        began = load.now()
        out = deploy_vms(release=release("r2", v2), hosts=lab.hosts, transport=lab.transport(),
                         nginx=lab.nginx(), options=options)
        ended = load.now()
        time.sleep(2)
    finally:
        load.stop()
    before, during = summary(load.window(0, began)), summary(load.window(began, ended))
    return {"before": before, "during": during, "rollout_seconds": round(ended - began, 1),
            "failed_total": sum(1 for s in load.samples if s.status != 200), "events": out["events"]}


def main(argv: list[str]) -> int:
    args = parser(__doc__, reps=1).parse_args(argv)
    missing = [tool for tool in ("podman", "nginx", "ssh") if shutil.which(tool) is None
               and not Path(f"/usr/sbin/{tool}").exists()]
    if missing or not Path("/usr/sbin/sshd").exists():
        print(f"bench rollout: skipped, missing {', '.join(missing) or 'sshd'} (`./run setup`)")
        return 0
    work = Path(tempfile.mkdtemp(prefix=os.environ.get("MLSHIP_LAB_PREFIX", "mlship-lab") + "-bench-"))
    runs = []
    try:
        v1 = _train(work / "v1", {"num_round": "40", "max_depth": "4"})
        v2 = _train(work / "v2", {"num_round": "60", "max_depth": "5"})
        _readable(work)
        for _ in range(args.reps):
            with pg_schema(PG) as db, Lab(3, prefix=os.environ.get("MLSHIP_LAB_PREFIX", "mlship-lab")) as lab:
                runs.append(run_once(lab, v1, v2, db, args.seconds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'run':>4} {'phase':<8} {'requests':>9} {'failed':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for n, r in enumerate(runs, 1):
        for phase in ("before", "during"):
            s = r[phase]
            print(f"{n:>4} {phase:<8} {s['requests']:>9} {s['failed']:>7} {s['rate']:>7} "
                  f"{s['p50_ms']:>8} {s['p99_ms']:>8}")
        print(f"{n:>4} rollout of 3 hosts: {r['rollout_seconds']} s, failed requests in the whole run: "
              f"{r['failed_total']}")
    targets = {"zero_failed_requests": all(r["failed_total"] == 0 for r in runs),
               "at_least_50_rps_during": all(r["during"]["rate"] >= 50 for r in runs)}
    return report("rollout", {"image": IMAGE, "runs": runs}, targets)
