"""Streaming batch inputs: exact chunks, resume by skipping chunks, odd JSON Lines."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from inference.errors import BadInput
from inference.portal import sources


def _ids(frames: list[pd.DataFrame]) -> list[list[int]]:
    return [f["i"].tolist() for f in frames]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_chunks_are_exact_and_skipping_resumes_where_asked(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame({"i": range(23), "apps": [f"a{i}|b" for i in range(23)]})
    path = tmp_path / f"in.{fmt}"
    {"jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     "csv": lambda: frame.to_csv(path, index=False),
     "parquet": lambda: frame.to_parquet(path)}[fmt]()
    chunks = list(sources.chunks(path, fmt, 5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert _ids(list(sources.chunks(path, fmt, 5, skip_chunks=3))) == [list(range(15, 20)), [20, 21, 22]]
    assert list(sources.chunks(path, fmt, 5, skip_chunks=9)) == []


def test_jsonl_whose_types_change_midway_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    rows = [{"i": n, "device_id": n if n < 4 else f"d{n}"} for n in range(7)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    chunks = list(sources.chunks(path, "jsonl", 3))
    assert _ids(chunks) == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks[2]["device_id"].tolist() == ["d6"]


def test_jsonl_with_a_broken_line_names_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}\n{"i": \n')
    with pytest.raises(BadInput, match="line 3 is not valid JSON"):
        list(sources.chunks(path, "jsonl", 2))


def test_jsonl_timestamps_stay_the_text_they_were(tmp_path: Path) -> None:
    """pyarrow would read these as timestamps (and records would come back as epoch numbers)."""
    rows = [{"i": n, "t": "2016-05-07 16:44:01", "ts": ["2016-05-01 10:00:00", "2016-05-02T11:00:00"],
             "nested": {"at": "2016-05-03 12:00:00"}} for n in range(3)]
    path = tmp_path / "times.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame = next(sources.chunks(path, "jsonl", 10))
    back = json.loads(frame.to_json(orient="records"))
    assert back == rows


@pytest.mark.parametrize(("location", "message"), [
    ("", "non-empty"), ("   ", "non-empty"), ("/tmp/a\x00b.csv", "NUL"), ("s3://bucket", "s3://bucket/key")])
def test_unusable_locations_are_bad_input_naming_the_problem(tmp_path: Path, location: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        sources.parse_location(location, ("file", "s3"), (tmp_path,))
