"""Channel reading (formats, headers, hidden files, labels) and the metric line format."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest

from training import metrics
from training.data import csv_has_header, list_files, read_channel, split_label
from training.errors import UserError


@pytest.mark.parametrize(("sample", "expected"), [
    ("label,f1,f2\n1,0.5,0.2\n", True),
    ("1,0.5,0.2\n0,0.1,0.3\n", False),
    ("gender,phone_brand\nM,Xiaomi\n", True),
    ("M,Xiaomi\nF,vivo\n", False),
    ("a,b\nx,1\n", True),
])
def test_csv_header_detection(sample: str, expected: bool) -> None:
    assert csv_has_header(sample, frozenset({"gender", "phone_brand"})) is expected


def test_listing_skips_hidden_and_marker_files_and_recurses(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name in ("a.csv", ".hidden.csv", "_SUCCESS", "sub/b.csv", "sub/deeper/c.csv",
                 "x.csv.sagemaker-uploading"):
        (tmp_path / name).write_text("1,2\n")
    (tmp_path / "empty.csv").write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in list_files(tmp_path)] == [
        "a.csv", "sub/b.csv", "sub/deeper/c.csv"]


def test_read_channel_mixes_files_and_formats(tmp_path: Path) -> None:
    frame = pd.DataFrame({"label": [0, 1, 0], "x": [1.0, 2.0, 3.0]})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "b.parquet", index=False)
    frame.to_json(tmp_path / "c.jsonl", orient="records", lines=True)
    data = read_channel(tmp_path, "train", None)
    assert data is not None and len(data.frame) == 9 and list(data.frame.columns) == ["label", "x"]
    x, y = split_label(data.frame, "label", "train")
    assert list(x.columns) == ["x"] and y.tolist() == [0, 1, 0] * 3


def test_label_by_index_and_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1,0.5\n0,0.2\n")
    data = read_channel(tmp_path, "train", "text/csv")
    assert data is not None
    x, y = split_label(data.frame, 0, "train")
    assert y.tolist() == [1, 0] and x.shape == (2, 1)
    with pytest.raises(UserError, match="Label column 'gender' not found in channel 'train'"):
        split_label(data.frame, "gender", "train")
    with pytest.raises(UserError, match="index 5 is out of range"):
        split_label(data.frame, 5, "train")
    with pytest.raises(UserError, match="Channel 'empty' is empty"):
        read_channel(tmp_path / "nothing", "empty", None)
    with pytest.raises(UserError, match="ContentType 'application/x-recordio' is not supported"):
        read_channel(tmp_path, "train", "application/x-recordio")


def test_metric_lines_round_trip_through_published_regexes() -> None:
    out = io.StringIO()
    line = metrics.emit({"validation:roc_auc": 0.81234567, "validation:logloss": 0.5, "train:loss": float("nan")},
                        step=3, stream=out)
    assert line == "[metrics] step=3 validation:roc_auc=0.812346 validation:logloss=0.5 train:loss=nan"
    assert "\t" not in line
    defs = {d["Name"]: d["Regex"] for d in metrics.metric_definitions()}
    assert all(len(r) <= 500 for r in defs.values())
    assert re.search(defs["validation:roc_auc"], line).group(1) == "0.812346"  # type: ignore[union-attr]
    assert re.search(defs["validation:logloss"], line).group(1) == "0.5"  # type: ignore[union-attr]
    # pr_auc must not match roc_auc's value (names are anchored by the preceding space)
    assert re.search(defs["validation:pr_auc"], line) is None
    assert metrics.parse(out.getvalue())["validation:roc_auc"] == [0.812346]
