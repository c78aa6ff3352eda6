"""modelformat.gender.record_rows: a few JSON records straight to the forest's float32 rows are
the rows the CSR path gives (entry for entry, NaN where CSR stores nothing), and the gender
predictor's probabilities through them are XGBoost's own."""

from __future__ import annotations

import itertools
import json
from array import array

import numpy as np
import pytest
import scipy.sparse as sp
import xgboost as xgb

from container.paths import MLPaths
from inference import codecs, predictors
from modelformat.gender import features
from modelformat.gender.record_rows import RecordRows
from tests.unit.test_features import _odd_records
from training.gender import synth


def _dense(csr: sp.csr_matrix) -> np.ndarray:
    """The rows XGBoost sees in a CSR matrix: an entry it does not store is missing."""
    out = np.full(csr.shape, np.nan, dtype=np.float32)
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    out[rows, csr.indices] = csr.data
    return out


def _batches(seeds: range) -> list[tuple[list[dict[str, object]], bool]]:
    """Batches of one to three records, and whether they come from the odd (edge-case) set."""
    rng = np.random.default_rng(7)
    out = []
    for seed in seeds:
        base = json.loads(synth.generate(16, seed=200 + seed).drop(columns=["gender"]).to_json(orient="records"))
        records = _odd_records(rng, base) if seed % 2 else base
        start = 0
        for size in itertools.cycle((1, 2, 3)):
            if start >= len(records):
                break
            out.append((records[start:start + size], bool(seed % 2)))
            start += size
    return out


def test_rows_are_the_csr_paths_rows_bit_for_bit() -> None:
    train = synth.generate(600, seed=3)
    train["installed_apps"] = [[*apps, "5001", "5002"] for apps in train["installed_apps"]]  # numeric ids
    pipeline = features.DevicePipeline().fit(train.drop(columns=["gender"]))
    rows = RecordRows(pipeline)
    taken = 0
    for batch, odd in _batches(range(16)):
        got = rows.rows(batch)
        want = pipeline.transform_records(batch)
        assert want is not None
        assert got is not None or odd, batch  # only edge cases may fall back
        if got is None:
            continue
        taken += 1
        mine = np.frombuffer(got, dtype=np.float32).reshape(len(batch), pipeline.n_features)
        theirs = _dense(want)
        missing = np.isnan(theirs)
        assert np.array_equal(np.isnan(mine), missing), batch
        assert np.array_equal(mine[~missing].view(np.uint32), theirs[~missing].view(np.uint32)), batch
    assert taken >= 70


def test_records_only_pandas_reads_fall_back() -> None:
    pipeline = features.DevicePipeline().fit(synth.generate(200, seed=1).drop(columns=["gender"]))
    rows = RecordRows(pipeline)
    base = {"phone_brand": "Xiaomi", "device_model": "MI 4", "installed_apps": ["a"]}
    assert rows.rows([{**base, "event_timestamps": ["5 May 2016 10:00"]}]) is None  # pandas' parser
    assert rows.rows([{**base, "event_lats": ["31.2"], "event_lons": [121.4]}]) is None  # to_numeric
    assert rows.rows([{**base, "event_timestamps": [1462100000] * 300}]) is None  # NumPy's many
    assert rows.rows([{**base, "phone_brand": 7}]) is None
    assert isinstance(rows.rows([base]), array)


@pytest.mark.parametrize("seed", range(3))
def test_predictions_are_xgboosts_own(gender_model: MLPaths, seed: int) -> None:
    model = predictors.load(gender_model.model_dir)
    assert getattr(model, "record_rows", None) is not None
    booster = xgb.Booster(model_file=str(gender_model.model_dir / "xgboost-model.ubj"))
    records = json.loads(synth.generate(60, seed=50 + seed).drop(columns=["gender"]).to_json(orient="records"))
    records = _odd_records(np.random.default_rng(seed), records) if seed else records
    fast = start = 0
    for size in itertools.cycle((1, 2, 3)):
        if start >= len(records):
            break
        batch, start = records[start:start + size], start + size
        inputs = codecs.decode(json.dumps(batch).encode(), "application/json", None, model.scalar_fields)
        got = model.predict(inputs)
        fast += model._few_records(inputs) is not None  # type: ignore[attr-defined]
        csr = model.pipeline.transform_records(batch)  # type: ignore[attr-defined]
        assert csr is not None
        want = booster.predict(xgb.DMatrix(csr))
        positive = model.score_column  # type: ignore[attr-defined]
        assert np.allclose(got.columns[positive], np.round(want, 6), atol=1e-6, rtol=0), batch
    assert fast >= 10
