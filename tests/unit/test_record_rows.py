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
    taken = plains = 0
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
        plain = rows.plain_rows(batch)
        if plain is not None:  # records as SDKs send them: the same bytes without the checks
            assert plain.tobytes() == got.tobytes(), batch
            plains += 1
        else:
            assert odd, batch
    assert taken >= 70
    assert plains >= 40


def test_records_only_pandas_reads_fall_back() -> None:
    pipeline = features.DevicePipeline().fit(synth.generate(200, seed=1).drop(columns=["gender"]))
    rows = RecordRows(pipeline)
    base = {"phone_brand": "Xiaomi", "device_model": "MI 4", "installed_apps": ["a"]}
    assert rows.rows([{**base, "event_timestamps": ["5 May 2016 10:00"]}]) is None  # pandas' parser
    assert rows.rows([{**base, "event_lats": ["31.2"], "event_lons": [121.4]}]) is None  # to_numeric
    assert rows.rows([{**base, "event_timestamps": [1462100000] * 300}]) is None  # NumPy's many
    assert rows.rows([{**base, "phone_brand": 7}]) is None
    assert isinstance(rows.rows([base]), array)


def test_only_records_with_every_field_a_plain_list_take_the_plain_rows() -> None:
    pipeline = features.DevicePipeline().fit(synth.generate(200, seed=1).drop(columns=["gender"]))
    rows = RecordRows(pipeline)
    plain = {"phone_brand": " Xiaomi ", "device_model": "MI 4", "installed_apps": ["a", 5001],
             "active_apps": [], "app_categories": ["Finance"], "event_timestamps": ["2016-05-01 10:22:05"],
             "event_lats": [31.2], "event_lons": [121.4]}
    got = rows.plain_rows([plain, plain])
    assert got is not None and got.tobytes() == rows.rows([plain, plain]).tobytes()
    for change in ({"installed_apps": "a|b"}, {"phone_brand": None}, {"device_model": 3},
                   {"events": []}, {"event_lats": (31.2,)}):
        assert rows.plain_rows([plain, {**plain, **change}]) is None, change
    for missing in ("phone_brand", "event_lons", "app_categories"):
        assert rows.plain_rows([{k: v for k, v in plain.items() if k != missing}]) is None, missing


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


def test_the_compiled_row_writers_round_as_array_f_and_refuse_what_is_not_theirs() -> None:
    from modelformat.forest import compiled

    if compiled is None:
        pytest.skip("modelformat._forest was not built")
    values = [0.1, -0.0, 0.0, 1e-46, -1e-46, 3.5e38, 1e39, -2.5, float("nan"), 0.7]
    mean = array("d", [0.0] * 9 + [0.7])
    std = array("d", [1.0] * 9 + [0.3])
    out = array("f", [7.0]) * (len(values) + 2)
    compiled.put_dense(out, 1, values, mean, std)
    # (NaN -> the mean) - mean, / std in float64, then float32; 0 as float32 (an underflow too) is missing
    want = array("f", [((m if v != v else v) - m) / d for v, m, d in zip(values, mean, std, strict=True)])
    for j, v in enumerate(want):
        got = out[1 + j]
        assert (np.isnan(got) if v == 0.0 else got == v), (j, got, v)
    rng = np.random.default_rng(3)
    raw, mean, std = rng.normal(size=35) * 50, rng.normal(size=35), rng.uniform(1e-9, 9, size=35)
    row = array("f", [0.0]) * 35
    compiled.put_dense(row, 0, raw.tolist(), array("d", mean), array("d", std))
    assert row.tobytes() == ((raw - mean) / std).astype(np.float32).tobytes()  # NumPy's own scaling
    assert out[0] == 7.0 and out[-1] == 7.0
    assert compiled.mark(out, 2, {"a": 0, "b": 3}, ["b", 5001, "zzz", 2.5]) == 2 and out[5] == 1.0
    with pytest.raises(ValueError):
        compiled.mark(out, 9, {"a": 5}, ["a"])  # past the end
    with pytest.raises(ValueError):
        compiled.put_dense(out, 8, values, mean, std)  # past the end, and mean of another length
    with pytest.raises(TypeError):
        compiled.put_dense(array("d", [0.0]) * 20, 0, values, mean, std)  # not float32
    with pytest.raises(TypeError):
        compiled.put_dense(out, 0, [1], array("d", [0.0]), array("d", [1.0]))  # an int is not a float here
