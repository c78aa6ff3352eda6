"""The forest scores exactly what XGBoost scores (to 1e-6), walked in C or in NumPy, for every model
shape it accepts, and refuses the shapes it does not reproduce."""

from __future__ import annotations

import sys
from array import array
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from modelformat import forest as forest_module
from modelformat.forest import MAX_DEPTH, Forest, compile_booster, probe_rows
from modelformat.gender.scorers import XGBoostScorer


def _booster(objective: str, depth: int, rounds: int, missing: float, seed: int,
             **extra: Any) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 12)).astype(np.float32)
    x[rng.random(x.shape) < missing] = np.nan
    signal = np.nan_to_num(x[:, 0]) * 2 - np.nan_to_num(x[:, 3]) + np.isnan(x[:, 5]) + rng.normal(size=3000)
    y = (signal > 0).astype(float) if objective != "reg:squarederror" else signal
    params = {"objective": objective, "max_depth": depth, "eta": 0.3, "nthread": 1, "seed": seed, **extra}
    booster = xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=rounds)
    return booster, x


CASES = {
    "logistic depth 6": ("binary:logistic", 6, 60, 0.0, {}),
    "logistic with missing values": ("binary:logistic", 5, 40, 0.2, {}),
    "shallow, unbalanced trees": ("binary:logistic", 8, 30, 0.1, {"min_child_weight": 20}),
    "regression": ("reg:squarederror", 4, 50, 0.05, {}),
    "raw margins": ("binary:logitraw", 3, 20, 0.0, {}),
    "lossguide leaves": ("binary:logistic", 8, 25, 0.1, {"grow_policy": "lossguide", "max_leaves": 24}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forest_matches_xgboost_on_many_random_rows(case: str) -> None:
    objective, depth, rounds, missing, extra = CASES[case]
    booster, train_x = _booster(objective, depth, rounds, missing, seed=len(case), **extra)
    forest = compile_booster(booster)
    assert forest is not None, f"{case}: the forest refused a model it should reproduce"
    rng = np.random.default_rng(7)
    random_rows = (rng.normal(size=(4000, 12)) * rng.choice([0.1, 1, 5], size=(4000, 12))).astype(np.float32)
    random_rows[rng.random(random_rows.shape) < missing + 0.02] = np.nan
    for x in (random_rows, train_x, probe_rows(forest, 4000, seed=11)):
        expected = booster.inplace_predict(x).astype(np.float64)
        # The C walk applies the link as XGBoost does (float32, libm's expf): the same bits.
        assert np.array_equal(forest.predict(x).astype(np.float64), expected), case
        for start in range(0, len(x), 17):  # several rows: level by level in NumPy
            got = forest.predict(x[start:start + 17])
            assert np.abs(got - expected[start:start + 17]).max() <= 1e-6, case
            numpy_walk = forest.margin_numpy(x[start:start + 17])
            assert np.array_equal(forest.margin_c(x[start:start + 17]), numpy_walk), case
        for row in range(0, len(x), 7):  # one row: all splits decided at once in NumPy
            assert abs(float(forest.predict(x[row:row + 1])[0]) - expected[row]) <= 1e-6, case
            assert forest.margin_c(x[row:row + 1])[0] == forest.margin_numpy(x[row:row + 1])[0], case


def test_the_package_is_built_with_its_c_walk() -> None:
    """./run's install compiles modelformat/_forest.c (setup.py), and so does the image's build
    stage; without it serving falls back to the NumPy walk, slower but the same."""
    assert forest_module.compiled is not None
    assert forest_module.SMALL_BATCH == 128


def test_the_c_walk_refuses_arrays_that_do_not_match_the_forest() -> None:
    booster, x = _booster("binary:logistic", 3, 5, 0.0, seed=4)
    forest = compile_booster(booster)
    assert forest is not None and forest_module.compiled is not None
    out = np.empty(2, dtype=np.float32)
    with pytest.raises(ValueError, match="do not match"):  # rows of the wrong width
        forest_module.compiled.margin(np.zeros((2, 5), np.float32), forest.nodes, forest.leaf, forest.depth,
                                      forest.n_trees, forest.n_features, 0.0, False, out)
    short = Forest(**{**forest.__dict__, "leaf": forest.leaf[:-1]})
    with pytest.raises(ValueError, match="do not match"):
        short.margin_c(x[:2])


class _Watched:
    """The compiled forest, counting the batches it scores."""

    def __init__(self, forest: Any) -> None:
        self.forest, self.n_features, self.batches = forest, forest.n_features, []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(len(x))
        return np.asarray(self.forest.predict(x))


def test_the_scorer_uses_the_forest_for_small_batches_only(tmp_path: Any) -> None:
    booster, x = _booster("binary:logistic", 6, 40, 0.1, seed=3)
    booster.save_model(str(tmp_path / XGBoostScorer.MODEL_FILE))
    scorer = XGBoostScorer.load(tmp_path, {}, threads=1)
    assert scorer.forest is not None
    watched = _Watched(scorer.forest)
    scorer.forest = watched  # type: ignore[assignment]
    expected = booster.inplace_predict(x).astype(np.float64)
    small = XGBoostScorer.SMALL_BATCH
    for rows in (1, 5, small, small + 1, 1000):
        watched.batches.clear()
        got = scorer.predict_proba(x[:rows])
        assert got.shape == (rows,) and np.abs(got - expected[:rows]).max() <= 1e-6
        assert watched.batches == ([rows] if rows <= small else []), rows


def test_models_the_forest_cannot_reproduce_keep_xgboost() -> None:
    multi, _ = _booster("multi:softprob", 3, 5, 0.0, seed=1, num_class=3)
    assert compile_booster(multi) is None
    deep, _ = _booster("binary:logistic", MAX_DEPTH + 4, 3, 0.0, seed=2, min_child_weight=0)
    assert compile_booster(deep) is None


def test_a_few_scores_round_to_the_same_bits_as_numpy() -> None:
    """The gender predictor turns up to FEW_ROWS scores into labels and probabilities in plain
    floats; a batch goes through NumPy. Both must give the same values, bit for bit."""
    from inference.families.gender import few_scores

    rng = np.random.default_rng(5)
    halves = (np.arange(2000) + 0.5) / 1e6  # exactly halfway between two 6-decimal values
    p = np.concatenate([rng.random(20000), halves, 1 - halves, [0.0, 1.0, 0.5, 0.3, 1e-300]])
    p = np.concatenate([p, np.float32(rng.random(5000)).astype(np.float64)])  # the forest's float32 scores
    for threshold in (0.5, 0.3):
        positive = p >= threshold
        labels, confidence, scores = few_scores(p.tolist(), threshold, "F", "M")
        assert labels == ["M" if v else "F" for v in positive.tolist()]
        assert confidence == np.round(np.where(positive, p, 1.0 - p), 6).tolist()
        assert scores == np.round(p, 6).tolist()


def _row_writers() -> Any:
    compiled = forest_module.compiled
    if compiled is None:
        pytest.skip("modelformat._forest was not built")
    return compiled


@pytest.mark.parametrize("start", [sys.maxsize, sys.maxsize - 1, sys.maxsize // 4 + 1, -1, -sys.maxsize - 1])
def test_put_dense_refuses_a_start_past_the_row_even_where_start_plus_length_overflows(start: int) -> None:
    """``start + len(raw)`` wrapped round to a small number passed the old check, and the row was
    written before the buffer: here into the array the view starts inside, where the test sees it."""
    compiled = _row_writers()
    backing = np.zeros(8, dtype=np.float32)
    out = backing[4:]  # the last 4 floats: a write before them lands in backing[:4]
    mean, std = array("d", [0.0, 0.0]), array("d", [1.0, 1.0])
    with pytest.raises(ValueError, match="run past out"):
        compiled.put_dense(out, start, [1.0, 2.0], mean, std)
    assert not backing.any()


@pytest.mark.parametrize(("start", "position"), [
    (sys.maxsize, 1), (sys.maxsize - 2, 5), (1, sys.maxsize), (sys.maxsize // 2, sys.maxsize // 2 + 3),
    (-1, 1), (-sys.maxsize - 1, 1), (0, -1), (0, 4),
])
def test_mark_refuses_a_position_past_the_row_even_where_the_sum_overflows(start: int, position: int) -> None:
    compiled = _row_writers()
    backing = np.zeros(8, dtype=np.float32)
    out = backing[4:]
    with pytest.raises(ValueError, match="run|negative"):
        compiled.mark(out, start, {"app": position}, ["app"])
    assert not backing.any()


def test_the_row_writers_still_write_inside_the_row() -> None:
    compiled = _row_writers()
    out = array("f", [0.0] * 6)
    compiled.put_dense(out, 4, [3.0, float("nan")], array("d", [1.0, 5.0]), array("d", [2.0, 1.0]))
    assert compiled.mark(out, 1, {"a": 0, "b": 2}, ["a", 7, "b", "zzz"]) == 1
    assert out.tolist()[:4] == [0.0, 1.0, 0.0, 1.0] and out[4] == 1.0 and np.isnan(out[5])


def _unaligned(data: bytes, floats: bool = False) -> memoryview[Any]:
    """The bytes one past an aligned address (as float32 with ``floats``): a value read there is misaligned."""
    view = memoryview(bytearray(len(data) + 1))[1:]
    view[:] = data
    return view.cast("f") if floats else view


def test_the_compiled_calls_refuse_misaligned_buffers_rather_than_read_through_them() -> None:
    """A float read through a pointer that is not 4-byte aligned is undefined behaviour in C (and a
    fault on some CPUs): buffers that are not aligned for their values are refused."""
    compiled = _row_writers()
    booster, x = _booster("binary:logistic", 3, 5, 0.0, seed=4)
    forest = compile_booster(booster)
    assert forest is not None
    rows, out = np.ascontiguousarray(x[:2]), np.empty(2, np.float32)
    args = (forest.depth, forest.n_trees, forest.n_features, 0.0, False)
    for bad in ((_unaligned(rows.tobytes()), forest.nodes, forest.leaf, *args, out),
                (rows, _unaligned(forest.nodes.tobytes()), forest.leaf, *args, out),
                (rows, forest.nodes, _unaligned(forest.leaf.tobytes()), *args, out),
                (rows, forest.nodes, forest.leaf, *args, _unaligned(out.tobytes()))):
        with pytest.raises(ValueError, match="aligned"):
            compiled.margin(*bad)
    body = b"1,2,3,4,5,6,7,8,9,10,11,12\n"
    with pytest.raises(ValueError, match="aligned"):
        compiled.score_csv(body, _unaligned(forest.nodes.tobytes()), forest.leaf, *args[:4], False, 8)
    mean, std = array("d", [0.0]), array("d", [1.0])
    with pytest.raises(ValueError, match="aligned"):
        compiled.put_dense(_unaligned(bytes(8), floats=True), 0, [1.0], mean, std)
    with pytest.raises(ValueError, match="aligned"):
        compiled.put_dense(array("f", [0.0]), 0, [1.0], _unaligned(mean.tobytes()), std)
    with pytest.raises(ValueError, match="aligned"):
        compiled.mark(_unaligned(bytes(8), floats=True), 0, {"a": 0}, ["a"])


@pytest.mark.parametrize(("objective", "extra", "named"), [
    ("multi:softprob", {"num_class": 3}, "3 classes"),
    ("multi:softmax", {"num_class": 3}, "3 classes"),
    ("reg:squarederror", {}, "reg:squarederror"),
    ("binary:logitraw", {}, "binary:logitraw"),
    ("binary:logistic", {"multi_strategy": "multi_output_tree", "tree_method": "hist"}, "2 targets"),
])
def test_a_booster_the_scorer_cannot_serve_is_refused_at_load(tmp_path: Path, objective: str,
                                                               extra: dict[str, Any], named: str) -> None:
    """Served anyway, a multi-class booster answered one row with a 500 and several with a list per
    probability; the load now fails, naming what is wrong (what /ping then reports)."""
    if named == "2 targets":
        rng = np.random.default_rng(0)
        x = rng.normal(size=(200, 4)).astype(np.float32)
        y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(float)
        booster = xgb.train({"objective": objective, "nthread": 1, **extra}, xgb.DMatrix(x, label=y), 3)
    else:
        booster, _ = _booster(objective, 3, 5, 0.0, seed=1, **extra)
    booster.save_model(str(tmp_path / XGBoostScorer.MODEL_FILE))
    with pytest.raises(ValueError, match=named):
        XGBoostScorer.load(tmp_path, {}, threads=1)


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:logistic"])
def test_a_probability_booster_loads(tmp_path: Path, objective: str) -> None:
    booster, x = _booster(objective, 3, 5, 0.0, seed=1)
    booster.save_model(str(tmp_path / XGBoostScorer.MODEL_FILE))
    scorer = XGBoostScorer.load(tmp_path, {}, threads=1)
    assert scorer.predict_proba(x[:3]).shape == (3,)
