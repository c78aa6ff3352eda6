"""The plain-CSV shortcut (modelformat._forest.score_csv, Predictor.transform): its parse gives
NumPy's float32 cast of every field bit for bit, it refuses everything else so the general decoder
answers it, its predictions equal XGBoost's own to 1e-6, and /invocations answers with the same
bytes whether the shortcut or the general path served the request."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from inference import codecs, predictors
from inference.dataplane import DataPlane, Invocation
from inference.families import gender
from inference.registry import ModelRegistry, ModelSlot
from modelformat import forest as forest_module
from modelformat.forest import compile_booster
from modelformat.gender.scorers import XGBoostScorer

compiled = forest_module.compiled
pytestmark = pytest.mark.skipif(compiled is None, reason="modelformat._forest was not built")


def _fields(rng: np.random.Generator, n: int) -> list[str]:
    """Decimal spellings a client writes: fixed and scientific, many digits and few, signs,
    leading zeros, bare points, huge and tiny exponents (the slow, exact path past 15 digits)."""
    values = rng.normal(size=n) * 10.0 ** rng.integers(-40, 39, size=n)
    out = []
    for i, v in enumerate(values):
        style = i % 9
        if style == 0:
            out.append(f"{v:.6f}")
        elif style == 1:
            out.append(repr(float(v)))  # up to 17 significant digits
        elif style == 2:
            out.append(f"{v:.3e}")
        elif style == 3:
            out.append(f"{v:E}")
        elif style == 4:
            out.append(f"+{abs(v):.2f}")
        elif style == 5:
            out.append(f"{int(rng.integers(-10**6, 10**6))}")
        elif style == 6:
            out.append(f"00{abs(v):.4f}" if abs(v) < 1e30 else "0.5")
        elif style == 7:
            out.append(f".{int(rng.integers(0, 10**9))}" if i % 2 else f"{int(rng.integers(0, 99))}.")
        else:
            out.append(f"{v:.25g}")
    return out


def _numpy_cast(fields: list[str]) -> np.ndarray | None:
    """What the general decoder makes of the fields (None where it raises or the cast overflows)."""
    with np.errstate(over="raise"):
        try:
            values = np.array(fields, dtype=np.float32)
        except (ValueError, FloatingPointError):
            return None
    return values if np.isfinite(values).all() else None


def test_the_parse_is_numpys_float32_cast_bit_for_bit() -> None:
    assert compiled is not None
    rng = np.random.default_rng(3)
    for _ in range(300):
        fields = _fields(rng, 40)
        expected = _numpy_cast(fields)
        body = (",".join(fields[:20]) + "\r\n" + ",".join(fields[20:]) + "\n").encode()
        got = compiled.csv_rows(body, 20, 8)
        if expected is None:  # beyond float32: the general decoder names the problem
            assert got is None, fields
            continue
        assert got is not None, fields
        assert np.frombuffer(got, dtype=np.float32).tobytes() == expected.tobytes(), fields


@pytest.mark.parametrize("field", [
    "0", "-0", "+0", "0.", ".0", "-.5", "5.", "007", "-0.000", "0.0001230", "100.000", "1.5e3",
    "123456789012345", "1234567890123456", "0.123456789012345", "0.1234567890123456",
    "000000000000000.000000000000001", "0.0000000000000000000001", "0.00000000000000000000001",
    "0" * 63 + "1", "0" * 64 + "1", "9" * 15 + "." + "0" * 30, "16777217", "3.4028235e38", "3.4028236e38",
])
def test_each_spelling_of_a_field_is_numpys_cast_in_any_column(field: str) -> None:
    """One pass reads the usual field, any other goes the long way: both give NumPy's value."""
    assert compiled is not None
    for fields in ([field, "1", "2"], ["1", field, "2"], ["1", "2", field]):
        expected = _numpy_cast(fields)
        got = compiled.csv_rows((",".join(fields) + "\n").encode(), 3, 8)
        if expected is None or len(field) > 64:  # past 64 characters the general decoder reads it
            assert got is None, fields
        else:
            assert got is not None and np.frombuffer(got, np.float32).tobytes() == expected.tobytes(), fields


@pytest.mark.parametrize("body", [
    b"", b"\n", b"1,2", b"1,2,3,4", b"1,,3", b"1, 2,3", b" 1,2,3", b"1,2,3 ", b'"1",2,3', b"nan,2,3",
    b"inf,2,3", b"1_0,2,3", b"0x10,2,3", b"1e,2,3", b"1e5e5,2,3", b"--1,2,3", b".,2,3", b"1.2.3,2,3",
    b"1e39,2,3", b"-1e400,2,3", b"1,2,3\r", b"1,2,3\n\n4,5,6", b"\n1,2,3", b"a,b,c\n1,2,3",
    b"\xef\xbb\xbf1,2,3", b"1,2,3;", "1,2,\u0663".encode(), b"1,2,3\n" * 9,
])
def test_anything_but_plain_numbers_is_left_to_the_general_decoder(body: bytes) -> None:
    assert compiled is not None
    assert compiled.csv_rows(body, 3, 8) is None


def test_line_ends_and_trailing_newlines_are_read_as_the_general_decoder_reads_them() -> None:
    assert compiled is not None
    for body in (b"1,2.5,-3", b"1,2.5,-3\n", b"1,2.5,-3\r\n\r\n", b"1,2.5,-3\n4,5,6e-1\n\n"):
        got = compiled.csv_rows(body, 3, 8)
        assert got is not None
        inputs = codecs.decode(body, "text/csv")
        assert inputs.matrix is not None and np.frombuffer(got, np.float32).tobytes() == inputs.matrix.tobytes()


def test_score_csv_matches_xgboost_on_many_random_rows() -> None:
    rng = np.random.default_rng(12)
    x = rng.normal(size=(3000, 10)).astype(np.float32)
    y = (x[:, 0] - x[:, 4] + rng.normal(size=3000) > 0).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.3, "nthread": 1},
                        xgb.DMatrix(x, label=y), num_boost_round=60)
    forest = compile_booster(booster)
    assert forest is not None
    rows = (rng.normal(size=(2000, 10)) * rng.choice([0.01, 1, 30], size=(2000, 10))).astype(np.float32)
    for start in range(0, len(rows), 5):
        batch = rows[start:start + 1 + (start // 5) % 5]
        body = "\n".join(",".join(repr(float(v)) for v in row) for row in batch).encode()
        got = forest.score_csv(body)
        assert got is not None
        expected = booster.predict(xgb.DMatrix(batch))
        assert np.abs(np.asarray(got) - expected).max() <= 1e-6
        assert np.array_equal(np.asarray(got), forest.predict(batch).astype(np.float64))


@pytest.fixture(scope="module")
def dataplane(numeric_model: Any) -> DataPlane:
    """The numeric gender model `train` made (6 features), served by the data plane as /invocations is."""
    model = predictors.load(numeric_model.model_dir)
    return DataPlane(ModelRegistry(ModelSlot(predictor=model), None), "application/json")


def _general(dataplane: DataPlane, call: Invocation, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(gender.Predictor, "transform", lambda self, body, media, accept: None)
        return dataplane.invoke(call)


def test_invocations_answers_the_same_bytes_with_or_without_the_shortcut(
        dataplane: DataPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    model = dataplane.select()
    rng = np.random.default_rng(8)
    served = 0
    for n in (1, 1, 2, 3, 8, 9, 40, 200, 1000):  # a few rows walked in C; a batch parsed in C
        x = rng.normal(size=(n, 6)) * rng.choice([0.001, 1, 1000], size=(n, 6))
        body = ("\n".join(",".join(f"{v:.6g}" for v in row) for row in x) + "\n").encode()
        assert isinstance(model, gender.Predictor) and model.transform(body, "text/csv", "application/json") is not None
        assert model.transform(body, "text/csv", "text/csv") is not None  # CSV in, CSV out: written by the model
        for accept in ("text/csv", "application/json", "application/jsonlines"):
            call = Invocation(body, "text/csv", accept)
            fast, slow = dataplane.invoke(call), _general(dataplane, call, monkeypatch)
            assert (fast.status, fast.content_type, fast.body) == (slow.status, slow.content_type, slow.body)
            served += 1
    assert served == 27


def test_a_body_the_shortcut_refuses_gets_the_general_answer(dataplane: DataPlane) -> None:
    from inference.errors import BadInput

    with pytest.raises(BadInput, match="6 features"):
        dataplane.invoke(Invocation(b"1,2,3\n", "text/csv", "text/csv"))
    with pytest.raises(BadInput, match="32-bit floats"):
        dataplane.invoke(Invocation((",".join(["1e39"] * 6)).encode(), "text/csv", "text/csv"))
    missing = dataplane.invoke(Invocation((",".join(["1"] * 5) + ",").encode(), "text/csv", "text/csv"))
    assert missing.status == 200  # an empty field is a missing value, as before


def _peak_bytes(call: Any, *args: Any) -> int:
    """The most memory Python's allocator (PyMem_Malloc, which the C parse uses) held during the call."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        call(*args)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("lines", [b"a\n", b"1\n", b"1,2\n", b"\r\n1\n"])
def test_the_parse_allocates_no_more_than_the_body_can_fill(lines: bytes) -> None:
    """Rows were counted by their newlines and rows x features x 4 bytes allocated before a field was
    read: 3,000,000 lines against a 45,000-feature model asked for 540 GB (a MemoryError, a 500), 2.7 GB
    against the 228-feature gender model. A row of F features takes at least 2F - 1 bytes, so a body
    that cannot hold its rows is refused before anything is allocated (the general decoder answers it)."""
    assert compiled is not None
    body = lines * 1000
    for features in (228, 45_000):
        assert _peak_bytes(compiled.csv_rows, body, features, 1 << 30) < 4 * len(body) + 4096
        assert compiled.csv_rows(body, features, 1 << 30) is None
    forest = compile_booster(_tiny_booster(features=228))
    assert forest is not None
    assert _peak_bytes(forest.score_csv, body, 1 << 30) < 4 * len(body) + 4096


def test_a_body_of_many_short_lines_against_a_wide_model_is_refused_not_a_memory_error() -> None:
    forest = compile_booster(_tiny_booster(features=45_000))
    assert forest is not None
    scorer = XGBoostScorer(booster=None, forest=forest)
    assert scorer.score_csv(b"a\n" * 3_000_000) is None  # so the general decoder's 400


def test_a_body_that_fills_its_rows_exactly_is_still_read() -> None:
    """The bound is the least a row can be written in: one-digit fields, single commas, \\n."""
    assert compiled is not None
    for features in (1, 2, 7):
        for rows in (1, 2, 129):
            body = ("\n".join([",".join(["1"] * features)] * rows)).encode()
            assert len(body) == 2 * features * rows - 1
            got = compiled.csv_rows(body, features, 1 << 30)
            assert got is not None and len(got) == 4 * features * rows


def _tiny_booster(features: int) -> xgb.Booster:
    """A two-round booster over ``features`` columns (only the first few used), trained on 50 rows."""
    rng = np.random.default_rng(0)
    x = np.zeros((50, features), dtype=np.float32)
    x[:, :3] = rng.normal(size=(50, 3))
    return xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                     xgb.DMatrix(x, label=(x[:, 0] > 0).astype(float)), num_boost_round=2)
