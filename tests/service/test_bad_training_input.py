"""Bad training data, kind by kind: each ends `train` with exit code 1, a first failure line that
says what to change, and no model left behind (issue 16's table of hostile training input)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from container.paths import MLPaths
from tests import factories
from training import cli

GOOD = "gender,phone_brand,device_model,installed_apps\nM,vivo,X6,a|b\nF,OPPO,R9,b|c\n"


def _csv(text: str | bytes, name: str = "d.csv") -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (folder / name).write_bytes(data)
    return write


def _gzip_truncated(folder: Path) -> None:
    blob = gzip.compress((GOOD * 200).encode())
    (folder / "d.csv.gz").write_bytes(blob[: len(blob) // 2])


def _parquet_corrupt(folder: Path) -> None:
    (folder / "d.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 100)


CASES = {
    "empty file": (_csv(b""), "Channel 'train' is empty"),
    "header only": (_csv("gender,phone_brand,device_model\n"), "has files but no rows"),
    "wrong delimiter (one column)": (_csv("gender phone_brand device_model\nM vivo X6\nF OPPO R9\n"),
                                     "reads as a single column"),
    "non-UTF-8 bytes": (_csv(GOOD.encode() + b"M,\xff\xfe\xfa,X6,a\n"), "not valid UTF-8"),
    "blank labels": (_csv(GOOD + ",vivo,X6,a\n"), "empty values"),
    "NaN labels": (_csv(GOOD + "nan,vivo,X6,a\n"), "empty values"),
    "a single class": (_csv("gender,phone_brand,device_model\nM,vivo,X6\nM,OPPO,R9\n"), "exactly 2 classes"),
    "corrupt Parquet": (_parquet_corrupt, "Cannot read parquet file d.parquet"),
    "truncated gzip": (_gzip_truncated, "Cannot read csv file d.csv.gz"),
    "duplicate columns": (_csv("gender,phone_brand,phone_brand\nM,vivo,x\nF,OPPO,y\n"),
                          "duplicate column name(s): phone_brand"),
    "no label column": (_csv("phone_brand,device_model\nvivo,X6\nOPPO,R9\n"), "Label column 'gender' not found"),
    "absurdly long field": (_csv("gender,phone_brand,device_model\nM," + "v" * 2_000_000 + ",X6\nF,OPPO,R9\n"),
                            "longer than"),
    "ids of mixed types in the label": (_csv("gender,phone_brand,device_model\n1,vivo,X6\nM,OPPO,R9\nF,a,b\n"),
                                        "exactly 2 classes"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_training_input_says_what_to_change(opt_ml: MLPaths, case: str) -> None:
    write, message = CASES[case]
    hps = {"label": "gender"} if case == "no label column" else {}
    factories.opt_ml(opt_ml.base, {**factories.FAST_XGB, **hps}, {"train": {}})
    write(opt_ml.channel("train"))
    assert cli.main() == 1
    first = opt_ml.failure.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("ClientError: ") and message in first, first
    assert "Traceback" not in first
    leftovers = [p.name for p in opt_ml.model_dir.iterdir()] if opt_ml.model_dir.exists() else []
    assert leftovers == [], f"half-written model files left behind: {leftovers}"
