"""The canonical "bring your own container" style server, as the reference to beat.

Flask + gunicorn sync workers, pandas CSV parsing per request, DataFrame -> DMatrix,
XGBoost's default threads, CSV out via pandas: the shape of AWS's scikit_bring_your_own
predictor.py. Serves the same booster file our model directory holds.

    REFERENCE_MODEL=/path/xgboost-model.ubj gunicorn -w 2 -b 127.0.0.1:PORT bench.reference_byo:app
"""

from __future__ import annotations

import io
import os

import flask
import pandas as pd
import xgboost as xgb

app = flask.Flask(__name__)
_model: xgb.Booster | None = None


def get_model() -> xgb.Booster:
    global _model
    if _model is None:
        _model = xgb.Booster(model_file=os.environ["REFERENCE_MODEL"])
    return _model


@app.route("/ping", methods=["GET"])
def ping() -> flask.Response:
    status = 200 if get_model() is not None else 404
    return flask.Response(response="\n", status=status, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def transformation() -> flask.Response:
    if flask.request.content_type != "text/csv":
        return flask.Response(response="This predictor only supports CSV data", status=415,
                              mimetype="text/plain")
    data = pd.read_csv(io.StringIO(flask.request.data.decode("utf-8")), header=None)
    predictions = get_model().predict(xgb.DMatrix(data))
    out = io.StringIO()
    pd.DataFrame({"results": predictions}).to_csv(out, header=False, index=False)
    return flask.Response(response=out.getvalue(), status=200, mimetype="text/csv")
