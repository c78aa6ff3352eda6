"""The quality gate: floors per metric per family, and no regression against the champion read from
the deploy target (a model directory, the served manifest, or GET /release's body); a gate without a
champion says so and never skips silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jenkins import gate


def test_gate_checks_floors_and_the_champion() -> None:
    good = {"roc_auc": 0.71, "logloss": 0.55}
    assert gate.evaluate(good, {"roc_auc": 0.6}) == []
    assert gate.evaluate(good, {"roc_auc": 0.75}) == ["roc_auc = 0.7100 misses the floor 0.7500"]
    assert gate.evaluate(good, {"logloss": 0.5}) == ["logloss = 0.5500 misses the floor 0.5000"]
    assert gate.evaluate(good, {"roc_auc": 0.6}, {"roc_auc": 0.715}, max_drop=0.01) == []
    worse = gate.evaluate(good, {"roc_auc": 0.6}, {"roc_auc": 0.74}, max_drop=0.01)
    assert worse == ["roc_auc = 0.7100 is worse than the champion's 0.7400 by more than 0.01"]
    assert gate.evaluate(good, {"logloss": 0.9}, {"logloss": 0.50}, max_drop=0.01) == [
        "logloss = 0.5500 is worse than the champion's 0.5000 by more than 0.01"]
    assert "no such metric" in gate.evaluate(good, {"f1": 0.5})[0]


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_gate_cli_on_a_trained_model(gender_model, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    model = gender_model.model_dir
    auc = json.loads((model / "model.json").read_text())["metrics"]["roc_auc"]
    assert gate.main(["--model-dir", str(model), "--min", f"roc_auc={auc - 0.01}",
                      "--report", str(tmp_path / "g.json")]) == 0
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["passed"] is True and report["champion"]["found"] is False
    out = capsys.readouterr().out
    assert "no champion: none was given" in out and "compared with the floors only" in out
    assert gate.main(["--model-dir", str(model), "--min", f"roc_auc={auc + 0.01}"]) == 1
    assert "FAIL roc_auc" in capsys.readouterr().out
    assert gate.main(["--model-dir", str(tmp_path), "--min", "roc_auc=0.5"]) == 2


def test_a_better_champion_fails_the_gate_naming_the_metric_and_both_values(
        gender_model, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    manifest = json.loads((gender_model.model_dir / "model.json").read_text())
    auc = manifest["metrics"]["roc_auc"]
    better = {**manifest, "metrics": {**manifest["metrics"], "roc_auc": auc + 0.05}}
    # the three shapes the champion commands leave: a model dir, a served manifest, GET /release's body
    where = {"model dir": _write(tmp_path / "dir" / "model.json", better).parent,
             "release": _write(tmp_path / "rel" / "release.json",
                               {"release": "abc123", "model": "xgboost", "version": "7", "manifest": better}).parent}
    for name, champion in where.items():
        report = tmp_path / f"{name}.json"
        code = gate.main(["--family", "gender", "--model-dir", str(gender_model.model_dir), "--min", "roc_auc=0.5",
                          "--champion", str(champion), "--max-drop", "0.01", "--report", str(report)])
        out = capsys.readouterr().out
        assert code == 1, name
        message = f"roc_auc = {auc:.4f} is worse than the champion's {auc + 0.05:.4f} by more than 0.01"
        assert f"gate gender: FAIL {message}" in out
        assert json.loads(report.read_text())["reasons"] == [message]
    assert "champion abc123 7 from" in out
    # within the tolerance it passes, against the same champion
    assert gate.main(["--model-dir", str(gender_model.model_dir), "--min", "roc_auc=0.5",
                      "--champion", str(where["release"]), "--max-drop", "0.06"]) == 0
    assert "(not worse than the champion)" in capsys.readouterr().out


def test_propensity_metrics_from_its_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    candidate = _write(tmp_path / "new" / "model.json", {
        "family": "propensity", "algorithm": "popularity", "version": "2",
        "metrics": {"hr@10": 0.31, "ndcg@10": 0.12, "top_k": 10}}).parent
    champion = _write(tmp_path / "old" / "release.json", {"release": "r1", "model": "neumf", "version": "1",
                      "manifest": {"family": "propensity", "metrics": {"hr@10": 0.52, "ndcg@10": 0.30}}}).parent
    code = gate.main(["--family", "propensity", "--model-dir", str(candidate), "--min", "ndcg@10=0.1",
                      "--min", "hr@10=0.2", "--champion", str(champion), "--max-drop", "0.01"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL ndcg@10 = 0.1200 is worse than the champion's 0.3000 by more than 0.01" in out
    assert "FAIL hr@10 = 0.3100 is worse than the champion's 0.5200 by more than 0.01" in out


def test_no_champion_is_said_and_can_be_required(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _write(tmp_path / "m" / "model.json", {"family": "gender", "metrics": {"roc_auc": 0.8}}).parent
    none = _write(tmp_path / "c" / "champion.json",
                  {"found": False, "reason": "the champion command failed (exit 1): no host answered GET /release"})
    base = ["--model-dir", str(model), "--min", "roc_auc=0.6", "--report", str(tmp_path / "r.json")]
    assert gate.main([*base, "--champion", str(none.parent)]) == 0
    out = capsys.readouterr().out
    assert "no champion: the champion command failed (exit 1): no host answered GET /release" in out
    assert json.loads((tmp_path / "r.json").read_text())["champion"]["reason"].startswith("the champion command")
    assert gate.main([*base, "--champion", str(none.parent), "--require-champion", "true"]) == 1
    assert "FAIL no champion: the champion command failed" in capsys.readouterr().out
    assert gate.main([*base, "--champion", str(tmp_path / "missing"), "--require-champion", "false"]) == 0
    assert "does not exist: no champion was read" in capsys.readouterr().out
    _write(tmp_path / "empty" / "model.json", {"family": "gender", "metrics": {}})
    assert gate.main([*base, "--champion", str(tmp_path / "empty")]) == 0
    assert "holds a manifest without metrics" in capsys.readouterr().out


def test_a_champion_of_another_family_or_without_the_metric(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    model = _write(tmp_path / "m" / "model.json", {"family": "gender", "metrics": {"roc_auc": 0.8}}).parent
    other = _write(tmp_path / "c" / "model.json", {"family": "propensity", "metrics": {"hr@10": 0.5}}).parent
    assert gate.main(["--family", "gender", "--model-dir", str(model), "--min", "roc_auc=0.6",
                      "--champion", str(other)]) == 1
    out = capsys.readouterr().out
    assert "is a propensity model, not gender" in out
    assert "roc_auc: the champion reports no such metric; not compared" in out
    assert gate.main(["--family", "propensity", "--model-dir", str(model), "--min", "roc_auc=0.6"]) == 2
