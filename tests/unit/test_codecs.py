"""Content negotiation and body decoding/encoding, with no HTTP in sight."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inference import codecs
from inference.errors import BadInput, NotAcceptable, UnsupportedMediaType


@pytest.mark.parametrize(("header", "expected"), [
    ("text/csv", "text/csv"), ("text/csv; charset=utf-8", "text/csv"), ("TEXT/CSV;charset=UTF-8", "text/csv"),
    ("application/json", "application/json"), ("application/jsonlines", "application/jsonlines"),
    ("application/x-jsonlines", "application/jsonlines"), ("application/json; charset=utf-8", "application/json"),
])
def test_request_types_tolerate_parameters(header: str, expected: str) -> None:
    assert codecs.request_type(header, b"1")[0] == expected


def test_unsupported_request_type_is_415() -> None:
    with pytest.raises(UnsupportedMediaType, match="application/x-recordio-protobuf"):
        codecs.request_type("application/x-recordio-protobuf", b"")
    with pytest.raises(UnsupportedMediaType, match="charset 'utf-16'"):
        codecs.request_type("text/csv; charset=utf-16", b"")


def test_missing_content_type_is_sniffed() -> None:
    assert codecs.request_type(None, b' {"a": 1}')[0] == "application/json"
    assert codecs.request_type(None, b"1,2,3")[0] == "text/csv"


@pytest.mark.parametrize(("accept", "expected"), [
    (None, "application/json"), ("*/*", "application/json"), ("text/csv", "text/csv"),
    ("application/json;verbose=True", "application/json"),
    ("application/xml, text/csv;q=0.5, application/jsonlines;q=0.9", "application/jsonlines"),
    ("text/*", "text/csv"), ("application/xml;q=1, */*;q=0.1", "application/json"),
])
def test_accept_negotiation_with_q_values(accept: str | None, expected: str) -> None:
    assert codecs.negotiate(accept, "application/json") == expected


def test_unacceptable_accept_is_406() -> None:
    with pytest.raises(NotAcceptable, match="application/xml"):
        codecs.negotiate("application/xml", "application/json")
    with pytest.raises(NotAcceptable):
        codecs.negotiate("text/csv;q=0", "application/json")


def test_csv_without_header_is_a_numeric_matrix() -> None:
    got = codecs.decode_csv("1,2,3\n4,5,6\n")
    assert got.matrix is not None and got.matrix.shape == (2, 3)
    assert codecs.decode_csv("1,,3\n").matrix is not None
    assert np.isnan(codecs.decode_csv("1,,3\n").matrix[0, 1])  # type: ignore[index]
    with pytest.raises(BadInput, match="CSV row 2 has 2 values but row 1 has 3"):
        codecs.decode_csv("1,2,3\n4,5\n")
    with pytest.raises(BadInput, match="row 2, column 1: 'x' is not a number"):
        codecs.decode_csv("1,2\nx,3\n")


def test_csv_with_header_is_a_table() -> None:
    got = codecs.decode_csv("phone_brand,device_model\nvivo,X6\n")
    assert got.table is not None and got.table.iloc[0]["phone_brand"] == "vivo"


@pytest.mark.parametrize("body", [
    '[{"a": 1, "b": 2}]', '{"instances": [{"a": 1, "b": 2}]}', '{"inputs": [{"a": 1, "b": 2}]}',
    '{"columns": ["a", "b"], "data": [[1, 2]]}', '{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}',
    '{"a": [1], "b": [2]}', '{"dataframe_records": [{"a": 1, "b": 2}]}',
])
def test_json_shapes_become_tables(body: str) -> None:
    got = codecs.decode_json(body)
    assert got.table is not None and got.table.to_dict(orient="records") == [{"a": 1, "b": 2}]


def test_json_lists_become_matrices_and_bad_json_is_named() -> None:
    assert codecs.decode_json('{"instances": [[1, 2], [3, 4]]}').matrix.shape == (2, 2)  # type: ignore[union-attr]
    assert codecs.decode_json("[1, 2, 3]").matrix.shape == (1, 3)  # type: ignore[union-attr]
    with pytest.raises(BadInput, match="not valid JSON"):
        codecs.decode_json('{"instances": [')
    with pytest.raises(BadInput, match="row 2 has 1 values"):
        codecs.decode_json("[[1, 2], [3]]")
    with pytest.raises(BadInput, match="only numbers"):
        codecs.decode_json('[[1, "x"]]')
    with pytest.raises(BadInput, match="line 2 is not valid JSON"):
        codecs.decode_jsonlines('{"a": 1}\n{oops}\n')


def test_encoders_csv_json_jsonlines_and_batch_lines() -> None:
    out = codecs.Outputs({"label": ["M", "F"], "probability": [0.9, 0.75], "extra": [1, 2]},
                         csv_columns=["label", "probability"])
    assert codecs.encode(out, "text/csv") == (b"M,0.9\nF,0.75\n", "text/csv")
    body, ctype = codecs.encode(out, "application/json")
    assert ctype == "application/json" and json.loads(body)["predictions"][1] == {
        "label": "F", "probability": 0.75, "extra": 2}
    body, ctype = codecs.encode(out, "application/json", batch=True)
    assert ctype == "application/jsonlines" and len(body.decode().splitlines()) == 2


def test_batch_csv_parse_matches_row_parse_and_names_bad_rows() -> None:
    rows = [[float(i * 10 + j) / 7 for j in range(5)] for i in range(40)]
    text = "\n".join(",".join(f"{v:.5f}" for v in r) for r in rows) + "\n"
    assert np.allclose(codecs.decode_csv(text).matrix, np.array(rows, dtype=np.float32), atol=1e-4)  # type: ignore[arg-type]
    broken = text.replace("\n", "\n1,2\n", 20)[: len(text) + 4]
    with pytest.raises(BadInput, match="has 2 values but row 1 has 5"):
        codecs.decode_csv(broken + "\n" + "\n".join("1,2,3,4,5" for _ in range(20)))
    with_gap = "\n".join(["1,,3"] * 20)
    assert np.isnan(codecs.decode_csv(with_gap).matrix).sum() == 20  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", ["plain", "crlf", "leading_blank_line", "short_row", "long_row", "text_cell"])
def test_batch_csv_from_bytes_agrees_with_the_text_rules(variant: str) -> None:
    rows = [[(i * 7 + j) / 3 for j in range(4)] for i in range(30)]
    lines = [",".join(f"{v:.4f}" for v in r) for r in rows]
    if variant == "short_row":
        lines[12] = "1,2,3"
    elif variant == "long_row":
        lines[12] = "1,2,3,4,5"
    elif variant == "text_cell":
        lines[12] = "1,2,x,4"
    text = ("\r\n" if variant == "crlf" else "\n").join(lines) + "\n"
    if variant == "leading_blank_line":
        text = "\n" + text
    body = text.encode()
    if variant in {"short_row", "long_row", "text_cell"}:
        with pytest.raises(BadInput, match="row 13"):
            codecs.decode(body, "text/csv")
        return
    matrix = codecs.decode(body, "text/csv").matrix
    assert matrix is not None and matrix.dtype == np.float32 and matrix.flags["C_CONTIGUOUS"]
    assert np.allclose(matrix, np.array(rows, dtype=np.float32), atol=1e-4)


def test_large_json_answers_match_the_record_encoder() -> None:
    n = 200
    out = codecs.Outputs({"device_id": [f"d{i}" for i in range(n)], "label": ["M" if i % 3 else "F" for i in range(n)],
                          "probability": [round(0.5 + i / (3 * n), 6) for i in range(n)], "n": list(range(n)),
                          "cold_start": [i % 7 == 0 for i in range(n)]},
                         csv_columns=["label", "probability"])
    body, ctype = codecs.encode(out, "application/json")
    assert ctype == "application/json" and json.loads(body) == {"predictions": out.rows()}
    mixed = codecs.Outputs({"items": [["a", "b"]] * n, "score": [0.5] * n}, csv_columns=["items"])
    assert json.loads(codecs.encode(mixed, "application/json")[0]) == {"predictions": mixed.rows()}


@pytest.mark.parametrize("column", [
    [0.5, 1e-7, 123456789.0, -0.0, float("nan")], ["m", "f", "unknown"], ["a,b", "c"], ['say "hi"', "x"],
    ["two\nlines", "y"], [0.5, "f", 1, True, None], [1, 2, 3], [True, False], [[0.1, 0.9], (1, 2)],
    list(np.array([0.25, 0.75])), [], ["", ""],
])
def test_a_column_of_csv_cells_at_once_equals_cell_by_cell(column: list[object]) -> None:
    assert list(codecs._csv_cells(column)) == [codecs.csv_cell(v) for v in column]


def _odd_value(rng: np.random.Generator) -> object:
    kind = int(rng.integers(9))
    if kind == 0:
        return "".join(chr(int(c)) for c in rng.choice([0, 9, 10, 31, 34, 92, 47, 127, 233, 0x4E2D, 0x1F600,
                                                          65, 122], size=int(rng.integers(0, 6))))
    if kind == 1:
        return int(rng.integers(-2**62, 2**62)) * int(rng.choice([1, 2**70]))
    if kind == 2:
        return float(rng.choice([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-320, 1e300]))
    if kind == 3:
        return float(rng.normal() * 10.0 ** int(rng.integers(-8, 9)))
    if kind == 4:
        return bool(rng.integers(2))
    if kind == 5:
        return None
    if kind == 6:
        return (0.25, "a")  # not a plain type: json.dumps' own path
    if kind == 7:
        return [1, None]
    return round(float(rng.random()), 6)


def test_a_json_answer_is_the_value_of_its_rows_in_compact_spelling() -> None:
    """codecs.encode writes JSON by orjson (bench/libraries.md): json.dumps' value (orjson spells a
    float its own shortest way, 1e300 for 1e+300), a float that is not finite as null, and an integer
    beyond 64 bits through json.dumps."""
    rng = np.random.default_rng(11)
    for _ in range(3000):
        n, width = int(rng.integers(0, 5)), int(rng.integers(1, 5))
        names = [str(rng.choice(["label", "probability", 'a "q"', "é", "probability_M", "device_id"]))
                 + str(j) for j in range(width)]
        columns = {name: [_odd_value(rng) for _ in range(n)] for name in names}
        out = codecs.Outputs(columns, csv_columns=names[:1])
        rows = [{k: (None if type(v) is float and not math.isfinite(v) else v) for k, v in r.items()}
                for r in out.rows()]
        body = codecs.encode(out, "application/json")[0]
        assert json.loads(body) == json.loads(json.dumps({"predictions": rows}))
        lines = codecs.encode(out, "application/jsonlines")[0].decode().splitlines()
        assert [json.loads(line) for line in lines] == json.loads(json.dumps(rows))


def test_the_usual_answer_is_compact_json() -> None:
    out = codecs.Outputs({"device_id": ["7"], "label": ["M"], "probability": [0.638274]}, csv_columns=["label"])
    assert codecs.encode(out, "application/json")[0] == b'{"predictions":[{"device_id":"7","label":"M","probability":0.638274}]}'
