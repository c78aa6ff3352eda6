"""Demo part 3: MLapp, the prediction portal, in front of the gender model (SQLite store).

Two versions of the gender model in a repository (XGBoost and logistic regression, trained in part
1 and here), then create (a batch job from a file) -> check, invoke with a shadow comparison, and the
comparison of the two versions over the same recorded inputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from scripts.demo import BIN, free_port, http, opt_ml, say, show, train


def run(work: Path) -> list[subprocess.Popen[bytes]]:
    gender = work / "gender" / "opt_ml"
    portal = work / "portal"
    if portal.exists():
        shutil.rmtree(portal)
    repo = portal / "models" / "gender"
    shutil.copytree(gender / "model", repo / "v1")
    say("portal: training version v2 of the gender model (logistic regression) on the same data")
    v2 = portal / "v2" / "opt_ml"
    (v2 / "input/data").mkdir(parents=True)
    shutil.copytree(gender / "input/data/train", v2 / "input/data/train")
    shutil.copytree(gender / "input/data/validation", v2 / "input/data/validation")
    opt_ml(v2, {"algorithm": "logreg"}, {"train": {"ContentType": "text/csv"},
                                         "validation": {"ContentType": "application/jsonlines"}})
    train(v2, "gender v2 (logreg)")
    shutil.copytree(v2 / "model", repo / "v2")

    from training.gender import synth

    data = portal / "data"
    data.mkdir()
    frame = synth.generate(5000, seed=11)
    frame.drop(columns=["gender"]).to_json(data / "devices.jsonl", orient="records", lines=True)

    port = free_port()
    env = {**os.environ, "SM_BASE_DIR": str(gender), "SAGEMAKER_BIND_TO_PORT": str(port),
           "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MLAPP_DATA_DIR": str(portal / "mlapp"),
           "MLAPP_MODEL_REPOSITORY": str(portal / "models"), "MLAPP_ALLOWED_ROOTS": str(portal)}
    with (portal / "serve.log").open("wb") as out:
        proc = subprocess.Popen([str(BIN / "serve")], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if http("GET", f"{base}/ping")[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"portal serve did not start; see {portal / 'serve.log'}")
        time.sleep(0.25)
    say(f"portal: serving on {base} (store: SQLite in {portal / 'mlapp'}; page: {base}/mlapp/)")
    headers = {"Content-Type": "application/json"}

    def post(path: str, body: object) -> tuple[int, bytes, dict[str, str]]:
        return http("POST", base + path, json.dumps(body).encode(), headers)

    show("models in the repository", *http("GET", f"{base}/api/models"))
    status, raw, hdrs = post("/api/providers/prediction/create", {
        "model": "gender", "input": {"location": str(data / "devices.jsonl")},
        "output_location": str(portal / "results")})
    show("create: a batch job over 5,000 records in a JSON Lines file", status, raw, hdrs)
    pid = json.loads(raw)["prediction_id"]
    while True:
        status, raw, hdrs = http("GET", f"{base}/api/providers/prediction/check?prediction_id={pid}")
        state = json.loads(raw)
        if state["status"] not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.2)
    show("check: the finished job (results written as JSON Lines parts)", status, raw, hdrs)
    records = json.loads(frame.head(200).to_json(orient="records"))
    status, raw, hdrs = post("/api/providers/prediction/invoke", {
        "model": {"name": "gender", "version": "v2"}, "input": records, "compare_with": "v1"})
    online = json.loads(raw)
    print(f"   invoke: HTTP {status}, 200 records with their true gender scored by v2 and, as a shadow, v1;"
          f" recorded as {online['prediction_id'][:8]} and {online['shadow']['prediction_id'][:8]}")
    comparison = online["comparison"]
    summary = {k: comparison.get(k) for k in ("rows_compared", "agreement_rate", "quality")}
    summary["score_delta"] = {k: v for k, v in comparison["score_delta"].items() if k != "histogram"}
    print("   comparison:", json.dumps(summary, default=str, indent=1).replace("\n", "\n      "))
    show("a bad request gets a JSON 4xx naming the problem",
         *post("/api/providers/prediction/create", {"model": "no-such-model", "input": records[:1]}))
    print(f"   open {base}/mlapp/?a={online['prediction_id']}&b={online['shadow']['prediction_id']} "
          "for the page (with --keep-serving)")
    return [proc]
