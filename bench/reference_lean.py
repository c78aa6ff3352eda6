"""A lean reference server: what a careful engineer writes in forty lines.

Flask + gunicorn sync workers, the CSV body split straight into a float32 array with NumPy,
XGBoost's ``inplace_predict`` with one thread, probabilities out as CSV lines. No pandas, no
DMatrix, no logging or metrics: the floor of a Flask model server, the bar ours must clear.

    REFERENCE_MODEL=/path/xgboost-model.ubj gunicorn -w 2 -b 127.0.0.1:PORT bench.reference_lean:app
"""

from __future__ import annotations

import os

import flask
import numpy as np
import xgboost as xgb

app = flask.Flask(__name__)
booster = xgb.Booster(model_file=os.environ["REFERENCE_MODEL"])
booster.set_param({"nthread": 1})
n_features = booster.num_features()


@app.get("/ping")
def ping() -> flask.Response:
    return flask.Response(b"{}", status=200, mimetype="application/json")


@app.post("/invocations")
def invocations() -> flask.Response:
    body = flask.request.get_data().strip()
    x = np.array(body.replace(b"\n", b",").split(b","), dtype=np.float32).reshape(-1, n_features)
    scores = booster.inplace_predict(x)
    return flask.Response("\n".join(f"{v:.6f}" for v in scores.tolist()) + "\n", mimetype="text/csv")
