"""The gate's coverage floors: `--min-coverage CLASS=X@P` passes only a model whose operating point
for the class labels at least X of the validation devices at a precision lower bound of at least
P, and fails naming the class otherwise."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from jenkins import gate

POINTS = {
    "target_precision": {"F": 0.8, "M": 0.8}, "thresholds": {"F": None, "M": 0.71},
    "precision": {"M": 0.84}, "precision_lower_bound": {"M": 0.81}, "support": {"M": 300},
    "coverage": {"M": 0.06},
    "not_reached": {"F": "F cannot reach the target precision 0.8 at any threshold on the 5000 validation "
                         "devices (...); F devices are never labelled"},
}
MANIFEST: dict[str, Any] = {"family": "gender", "classes": ["F", "M"], "operating_points": POINTS,
                            "metrics": {"roc_auc": 0.6, "coverage_F": 0.0, "coverage_M": 0.06}}


def test_coverage_floors_name_the_class_that_misses() -> None:
    assert gate.coverage_reasons(MANIFEST, [("M", 0.05, 0.8)]) == []
    assert gate.coverage_reasons(MANIFEST, [("M", 0.1, 0.8)]) == [
        "coverage of M at precision >= 0.8 = 0.0600 misses the floor 0.1"]
    assert gate.coverage_reasons(MANIFEST, [("M", 0.05, 0.85)]) == [
        "coverage of M at precision >= 0.85: its operating point's precision lower bound 0.8100 "
        "(target 0.8) is below 0.85"]
    (f_reason,) = gate.coverage_reasons(MANIFEST, [("F", 0.01, 0.8)])
    assert f_reason.startswith("coverage of F at precision >= 0.8: the model labels no F device (F cannot reach")
    assert [r.split(":")[0] for r in gate.coverage_reasons(MANIFEST, [("*", 0.01, 0.8)])] == [
        "coverage of F at precision >= 0.8"]
    assert "has no class 'W' (classes F, M)" in gate.coverage_reasons(MANIFEST, [("W", 0.01, 0.8)])[0]
    plain = {**MANIFEST, "operating_points": None}
    assert gate.coverage_reasons(plain, [("M", 0.01, 0.8)]) == [
        "coverage of M at precision >= 0.8: the model has no operating points (train it with target_precision)"]


def test_the_cli_fails_naming_the_class_and_reports_the_floors(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps(MANIFEST))
    report = tmp_path / "gate.json"
    assert gate.main(["--model-dir", str(model), "--min", "roc_auc=0.5", "--min-coverage", "M=0.05@0.8",
                      "--report", str(report)]) == 0
    assert "PASS roc_auc=0.6000, coverage M>=0.05@0.8" in capsys.readouterr().out
    assert json.loads(report.read_text())["coverage_floors"] == [{"class": "M", "coverage": 0.05, "precision": 0.8}]
    assert gate.main(["--model-dir", str(model), "--min-coverage", "*=0.05@0.8", "--report", str(report)]) == 1
    out = capsys.readouterr().out
    assert "FAIL coverage of F at precision >= 0.8: the model labels no F device" in out
    decision = json.loads(report.read_text())
    assert decision["passed"] is False and len(decision["reasons"]) == 1
    with pytest.raises(argparse.ArgumentTypeError, match="CLASS=COVERAGE@PRECISION"):
        gate._coverage_floor("M=0.05")
