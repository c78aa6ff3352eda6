"""`train` in-process against a temporary /opt/ml tree: success, artefacts, every failure message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from container.paths import MLPaths
from tests import factories
from training import cli, metrics


def _failure(paths: MLPaths) -> str:
    return paths.failure.read_text(encoding="utf-8").splitlines()[0]


def _assert_no_model(paths: MLPaths) -> None:
    assert not (paths.model_dir / "model.json").exists()
    leftovers = [p.name for p in paths.model_dir.iterdir()] if paths.model_dir.exists() else []
    assert leftovers == [], f"half-written model files left behind: {leftovers}"


def test_train_writes_model_manifest_metrics_and_plots(opt_ml: MLPaths, capsys: pytest.CaptureFixture[str]) -> None:
    factories.opt_ml(opt_ml.base, {**factories.FAST_XGB, "threshold": "0.4"},
                     {"train": {"ContentType": "text/csv"}, "validation": {}})
    factories.write_devices(opt_ml, "train", rows=400, seed=0)
    factories.write_devices(opt_ml, "validation", rows=150, seed=1, fmt="jsonl")
    assert cli.main() == 0
    manifest = json.loads((opt_ml.model_dir / "model.json").read_text())
    assert manifest["algorithm"] == "xgboost" and manifest["family"] == "gender"
    assert manifest["classes"] == ["F", "M"] and manifest["threshold"] == 0.4
    assert manifest["input"]["kind"] == "device_records"
    assert set(manifest["metrics"]) >= {"roc_auc", "pr_auc", "logloss", "accuracy", "precision", "recall", "f1"}
    assert manifest["data_fingerprint"]["train"] and manifest["data_fingerprint"]["validation"]
    assert manifest["libraries"]["xgboost"]
    for name in ("roc_curve.png", "pr_curve.png", "evaluation.json", "evaluation.md"):
        assert (opt_ml.output_data_dir / name).stat().st_size > 0
    assert (opt_ml.output_data_dir / "roc_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert opt_ml.success.exists() and not opt_ml.failure.exists()
    # The published HPO regexes read the real log output.
    out = capsys.readouterr().out
    defs = {d["Name"]: d["Regex"] for d in metrics.metric_definitions()}
    found = [float(m.group(1)) for m in re.finditer(defs["validation:roc_auc"], out)]
    assert found and found[-1] == pytest.approx(manifest["metrics"]["roc_auc"], abs=1e-5)
    assert metrics.parse(out)["validation:logloss"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_training_format_works(opt_ml: MLPaths, fmt: str) -> None:
    factories.opt_ml(opt_ml.base, {"algorithm": "logreg"}, {"train": {}})
    factories.write_devices(opt_ml, rows=200, fmt=fmt, name=f"part-1.{fmt}")
    (opt_ml.channel("train") / "nested").mkdir()
    factories.write_devices(opt_ml, rows=100, seed=5, fmt=fmt, name=f"nested/part-2.{fmt}")
    (opt_ml.channel("train") / ".DS_Store").write_text("junk")
    assert cli.main() == 0
    manifest = json.loads((opt_ml.model_dir / "model.json").read_text())
    assert manifest["algorithm"] == "logreg"
    assert manifest["training"]["rows"] == 240  # 300 rows, 20% held out


def test_numeric_csv_without_header_label_first(opt_ml: MLPaths) -> None:
    factories.opt_ml(opt_ml.base, {**factories.FAST_XGB})
    factories.write_numeric(opt_ml, features=5)
    assert cli.main() == 0
    manifest = json.loads((opt_ml.model_dir / "model.json").read_text())
    assert manifest["input"] == {"kind": "numeric", "raw_fields": None,
                                 "columns": ["1", "2", "3", "4", "5"], "n_features": 5}
    assert manifest["classes"] == [0, 1]


def test_label_by_name_in_headered_numeric_csv(opt_ml: MLPaths) -> None:
    factories.opt_ml(opt_ml.base, {"algorithm": "logreg", "label": "label"})
    factories.write_numeric(opt_ml, features=4, header=True)
    assert cli.main() == 0
    assert json.loads((opt_ml.model_dir / "model.json").read_text())["input"]["columns"] == ["f0", "f1", "f2", "f3"]


@pytest.mark.parametrize(("hps", "setup", "message"), [
    ({}, "empty", "ClientError: Channel 'train' is empty: no data files under"),
    ({"label": "sex"}, "devices", "ClientError: Label column 'sex' not found in channel 'train'"),
    ({"max_depth": "deep"}, "devices", "ClientError: Hyperparameter 'max_depth' = 'deep' is not a valid int"),
    ({"eta": "5"}, "devices", "ClientError: Hyperparameter 'eta' = 5 must be <= 1.0"),
    ({"num_rounds": "10"}, "devices", "ClientError: Unknown hyperparameter 'num_rounds' for algorithm 'xgboost'; did you mean 'num_round'?"),
    ({"algorithm": "catboost"}, "devices", "ClientError: Unknown algorithm 'catboost'; choose one of:"),
    ({"input_format": "numeric"}, "devices", "ClientError: Column(s) phone_brand, device_model"),
    ({}, "three-classes", "ClientError: The label column must hold exactly 2 classes for the gender model; found 3"),
    ({}, "wrong-types", "ClientError: Column(s) 2 are not numeric"),
    ({}, "no-train", "ClientError: Channel 'train' is required but the job has channels ['validation']"),
])
def test_failures_say_what_to_fix(opt_ml: MLPaths, hps: dict[str, str], setup: str, message: str) -> None:
    channels = {"validation": {}} if setup == "no-train" else {"train": {}}
    factories.opt_ml(opt_ml.base, hps, channels)
    if setup == "devices":
        factories.write_devices(opt_ml, rows=60)
    elif setup == "three-classes":
        frame = factories.devices(60)
        frame.loc[:9, "gender"] = "X"
        factories.synth.write(frame, opt_ml.channel("train") / "d.jsonl", "jsonl")
    elif setup == "wrong-types":
        (opt_ml.channel("train") / "d.csv").write_text("1,0.5,abc\n0,0.2,def\n1,0.1,x\n" * 5)
    elif setup == "no-train":
        factories.write_devices(opt_ml, "validation", rows=60)
    code = cli.main()
    assert code == 1
    first = _failure(opt_ml)
    assert first.startswith(message), first
    assert len(first) <= 1024
    _assert_no_model(opt_ml)
    assert not opt_ml.success.exists()


def test_bad_hyperparameters_fail_before_data_is_read(opt_ml: MLPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    factories.opt_ml(opt_ml.base, {"max_depth": "0"})
    factories.write_devices(opt_ml, rows=60)

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("data was read before hyperparameters were validated")

    monkeypatch.setattr("training.gender.task.read_channel", boom)
    assert cli.main() == 1
    assert _failure(opt_ml).startswith("ClientError: Hyperparameter 'max_depth' = 0 must be >= 1")


def test_malformed_config_json_is_a_client_error(opt_ml: MLPaths) -> None:
    opt_ml.hyperparameters.write_text("{not json")
    assert cli.main() == 1
    assert _failure(opt_ml).startswith("ClientError: hyperparameters.json at")


def test_unexpected_errors_are_algorithm_errors_with_traceback(opt_ml: MLPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    factories.write_devices(opt_ml, rows=60)

    def broken(*a: object, **k: object) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr("training.gender.task.evaluate.binary_metrics", broken)
    assert cli.main() == 2
    text = opt_ml.failure.read_text()
    assert text.startswith("AlgorithmError: ZeroDivisionError: float division by zero")
    assert "Traceback" in text
    _assert_no_model(opt_ml)


def test_resume_from_checkpoint_continues_the_rounds(opt_ml: MLPaths) -> None:
    factories.opt_ml(opt_ml.base, {"num_round": 8, "checkpoint_frequency": 4, "max_depth": 2})
    factories.write_devices(opt_ml, rows=200)
    assert cli.main() == 0
    full = json.loads((opt_ml.model_dir / "model.json").read_text())
    assert full["training"]["resumed_from"] is None
    ckpts = sorted(p.name for p in opt_ml.checkpoints_dir.glob("ckpt-*.ubj"))
    assert ckpts == ["ckpt-00000004.ubj", "ckpt-00000008.ubj"]
    # Simulate a restart after round 4: only the first checkpoint survived.
    for name in ("ckpt-00000008.ubj", "ckpt-00000008.ubj.json"):
        (opt_ml.checkpoints_dir / name).unlink()
    assert cli.main() == 0
    resumed = json.loads((opt_ml.model_dir / "model.json").read_text())
    assert resumed["training"]["resumed_from"] == 4
    assert resumed["training"]["steps_done"] == 8
    assert resumed["metrics"]["roc_auc"] == pytest.approx(full["metrics"]["roc_auc"], abs=1e-6)


def test_checkpoints_of_another_configuration_are_ignored(opt_ml: MLPaths) -> None:
    factories.opt_ml(opt_ml.base, {"num_round": 4, "checkpoint_frequency": 4, "max_depth": 2})
    factories.write_devices(opt_ml, rows=120)
    assert cli.main() == 0
    factories.opt_ml(opt_ml.base, {"num_round": 4, "checkpoint_frequency": 4, "max_depth": 3})
    assert cli.main() == 0
    assert json.loads((opt_ml.model_dir / "model.json").read_text())["training"]["resumed_from"] is None


def test_hidden_marker_files_do_not_count_as_data(opt_ml: MLPaths) -> None:
    (opt_ml.channel("train") / "_SUCCESS").write_text("")
    (opt_ml.channel("train") / ".part.csv").write_text("1,2\n")
    assert cli.main() == 1
    assert "Channel 'train' is empty" in _failure(opt_ml)


def test_training_job_frame_with_parquet_list_columns(opt_ml: MLPaths) -> None:
    frame = factories.devices(150)
    frame.to_parquet(opt_ml.channel("train") / "d.parquet", index=False)
    assert isinstance(pd.read_parquet(opt_ml.channel("train") / "d.parquet").iloc[0]["installed_apps"], object)
    assert cli.main() == 0
    assert (opt_ml.model_dir / "pipeline.json").exists()


def test_model_dir_keeps_nothing_but_the_committed_model(opt_ml: MLPaths) -> None:
    factories.write_devices(opt_ml, rows=80)
    assert cli.main() == 0
    names = sorted(p.name for p in opt_ml.model_dir.iterdir())
    assert names == ["model.json", "pipeline.json", "warmup.json", "xgboost-model.ubj"]
    assert not any(Path(n).name.startswith(".staging") for n in names)
