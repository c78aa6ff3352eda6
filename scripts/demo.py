"""The main job, end to end on this machine, with what SageMaker would do at each step.

    ./run demo [--workdir demo-run] [--rows 20000] [--keep-serving]

1. Lays out /opt/ml trees under the work dir with generated data (hyperparameters as strings).
2. Runs `train` for the gender model (XGBoost) and the propensity model through the contract.
3. Packs each /opt/ml/model into model.tar.gz as SageMaker does and unpacks it for hosting.
4. Starts `serve` (gunicorn) on each model, waits for /ping, and calls /invocations with
   CSV and JSON; then the MLapp portal: create (batch), invoke (online), check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def opt_ml(base: Path, hyperparameters: dict[str, Any], channels: dict[str, dict[str, str]]) -> None:
    (base / "input/config").mkdir(parents=True, exist_ok=True)
    hps = {k: str(v) for k, v in hyperparameters.items()}  # SageMaker passes every value as a string
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hps, indent=1))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps(channels, indent=1))
    (base / "input/config/resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))


def train(base: Path, title: str) -> float:
    say(f"train ({title}): SM_BASE_DIR={base} train")
    started = time.monotonic()
    env = {**os.environ, "SM_BASE_DIR": str(base), "TRAINING_JOB_NAME": f"demo-{title}"}
    # Metric lines (stdout) and JSON log lines (stderr) are shown live, as CloudWatch would.
    proc = subprocess.Popen([str(BIN / "train")], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        try:
            rec = json.loads(line)
            if not str(rec.get("msg", "")).startswith("hyperparameters:"):
                print(f"   [{rec.get('level', '')[:4]}] {rec.get('msg')}", flush=True)
        except ValueError:
            print("   " + line.rstrip(), flush=True)
    proc.wait()
    if proc.returncode != 0:
        failure = base / "output/failure"
        print(failure.read_text() if failure.exists() else "(no failure file)")
        raise SystemExit(f"train failed with exit code {proc.returncode}")
    return time.monotonic() - started


def package(base: Path, serving: Path) -> Path:
    """model.tar.gz as SageMaker uploads it, unpacked where hosting mounts /opt/ml/model."""
    tar_path = base / "output" / "model.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for entry in sorted((base / "model").iterdir()):
            tar.add(entry, arcname=entry.name)
    if serving.exists():
        shutil.rmtree(serving)
    (serving / "model").mkdir(parents=True)
    with tarfile.open(tar_path) as tar:
        tar.extractall(serving / "model", filter="data")
    size = tar_path.stat().st_size
    print(f"   packed {tar_path} ({size / 1024:.0f} KiB) -> unpacked into {serving / 'model'}")
    return tar_path


def package_and_serve(base: Path, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Pack the trained model as SageMaker would, serve it; the process and its /invocations URL."""
    serving = work / "serving"
    package(base, serving)
    port = free_port()
    return serve(serving, port, work / "serve.log"), f"http://127.0.0.1:{port}/invocations"


def serve(serving: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SM_BASE_DIR": str(serving), "SAGEMAKER_BIND_TO_PORT": str(port),
           "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MLAPP_DATA_DIR": str(serving / "mlapp")}
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "serve")], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    started = time.monotonic()
    while time.monotonic() - started < 90:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}; see {log}")
        try:
            status = http("GET", f"http://127.0.0.1:{port}/ping")[0]
        except OSError:
            status = 0
        print(f"\r   waiting for /ping on :{port} ... {time.monotonic() - started:4.1f}s status {status}",
              end="", flush=True)
        if status == 200:
            print()
            return proc
        time.sleep(0.25)
    raise SystemExit("serve did not become ready in 90 s")


def show(title: str, status: int, body: bytes, headers: dict[str, str]) -> None:
    text = body.decode()
    if len(text) > 900:
        text = text[:900] + " ..."
    indented = text.replace("\n", "\n      ")
    print(f"   {title}: HTTP {status} {headers.get('Content-Type', '')}\n      {indented}")


def gender(work: Path, rows: int) -> subprocess.Popen[bytes]:
    from training.gender import synth

    base = work / "gender" / "opt_ml"
    if base.exists():
        shutil.rmtree(base)
    say(f"gender: generating {rows} synthetic device records (CSV train, JSON Lines validation)")
    frame = synth.generate(rows, seed=7)
    cut = int(rows * 0.8)
    synth.write(frame.iloc[:cut], base / "input/data/train/devices.csv", "csv")
    synth.write(frame.iloc[cut:], base / "input/data/validation/devices.jsonl", "jsonl")
    opt_ml(base, {"algorithm": "xgboost", "num_round": 150, "max_depth": 5, "eta": 0.1,
                  "early_stopping_rounds": 20, "log_every": 25},
           {"train": {"ContentType": "text/csv"}, "validation": {"ContentType": "application/jsonlines"}})
    seconds = train(base, "gender")
    manifest = json.loads((base / "model/model.json").read_text())
    print(f"   trained in {seconds:.1f}s; validation ROC AUC {manifest['metrics']['roc_auc']:.3f}, "
          f"artefacts: {', '.join(sorted(p.name for p in (base / 'output/data').iterdir()))}")
    proc, url = package_and_serve(base, work / "gender")
    sample = synth.generate(3, seed=99).drop(columns=["gender"])
    csv_body = synth.to_csv_frame(sample).to_csv(index=False).encode()
    show("CSV device records (with header), Accept text/csv",
         *http("POST", url, csv_body, {"Content-Type": "text/csv; charset=utf-8", "Accept": "text/csv"}))
    json_body = json.dumps({"instances": json.loads(sample.to_json(orient="records"))}).encode()
    show("JSON instances, Accept application/json",
         *http("POST", url, json_body, {"Content-Type": "application/json"}))
    show("a mistake (wrong Content-Type) gets a JSON 415",
         *http("POST", url, b"<xml/>", {"Content-Type": "application/xml"}))
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "demo-run")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--keep-serving", action="store_true", help="leave the servers running")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        proc = gender(args.workdir, args.rows)
        procs.append(proc)
        for extra in _extra_parts():
            procs.extend(extra(args.workdir))
        say("done: every step above ran through the /opt/ml contract and real gunicorn servers")
        if args.keep_serving:
            print("   servers left running; stop them with Ctrl-C")
            signal.pause()
    finally:
        if not args.keep_serving:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
    return 0


def _extra_parts() -> list[Any]:
    """Further demo parts (propensity, portal) registered by their modules."""
    parts = []
    for name in ("scripts.demo_propensity", "scripts.demo_portal"):
        try:
            module = __import__(name, fromlist=["run"])
        except ModuleNotFoundError:
            continue
        parts.append(module.run)
    return parts


if __name__ == "__main__":
    sys.exit(main())
