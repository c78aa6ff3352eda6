"""Operating thresholds end to end: `train` chooses them on the validation split only and reports
them (a class that cannot reach its target says so and is never labelled), and every door answers
the same audience_label, on the fast and the general paths, with MLSHIP_FAST on and off."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from flask import Flask

from container.paths import MLPaths
from container.settings import Settings
from inference import predictors
from inference.app import create_app
from inference.codecs import Inputs
from inference.spark import scoring
from modelformat.gender.operating import KEY, NO_LABEL, OperatingPoints
from tests import factories
from training import cli
from training.checkpoints import StopFlag
from training.gender import operating, synth

TARGETS = {"target_precision": 0.75, "target_precision_F": 0.97}  # F cannot get there on this data
_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def _close_portals() -> Any:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _flipped(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(gender=frame["gender"].map({"F": "M", "M": "F"}))


@pytest.fixture(scope="module")
def op_model(tmp_path_factory: pytest.TempPathFactory) -> MLPaths:
    """Device records, a validation channel, and a 'test' channel whose labels are flipped: if
    `train` read it, the thresholds would be another's."""
    base = tmp_path_factory.mktemp("operating") / "opt_ml"
    paths = factories.opt_ml(base, {**factories.FAST_XGB, **TARGETS},
                             {"train": {}, "validation": {}, "test": {}})
    factories.write_devices(paths, "train", rows=400, seed=0)
    factories.write_devices(paths, "validation", rows=300, seed=1)
    synth.write(_flipped(factories.devices(300, seed=2)), paths.channel("test") / "devices.csv", "csv")
    cli.run(paths, StopFlag())
    return paths


@pytest.fixture(scope="module")
def op_numeric(tmp_path_factory: pytest.TempPathFactory) -> MLPaths:
    """Numeric rows (classes 0 and 1), validation held out of train by validation_fraction."""
    base = tmp_path_factory.mktemp("operating-numeric") / "opt_ml"
    paths = factories.opt_ml(base, {**factories.FAST_XGB, "input_format": "numeric",
                                    "validation_fraction": 0.3, "target_precision": 0.7})
    factories.write_numeric(paths, rows=500, features=6, header=True)
    cli.run(paths, StopFlag())
    return paths


def _manifest(paths: MLPaths) -> dict[str, Any]:
    return dict(json.loads((paths.model_dir / "model.json").read_text()))


def _served_p(paths: MLPaths, frame: pd.DataFrame) -> np.ndarray:
    predictor: Any = predictors.load(paths.model_dir)
    return np.asarray(predictor.scorer.predict_proba(predictor.features(Inputs(table=frame))))


def _y(frame: pd.Series, positive: Any) -> np.ndarray:
    return (frame.astype(str) == str(positive)).to_numpy().astype(np.int32)


# --- train ---------------------------------------------------------------------------------------
def test_thresholds_are_chosen_on_the_validation_channel_never_the_test_data(op_model: MLPaths) -> None:
    manifest = _manifest(op_model)
    points = manifest["operating_points"]
    classes = manifest["classes"]
    goal = operating.targets({**manifest["hyperparameters"]}, classes)
    assert goal == {"F": 0.97, "M": 0.75}
    val = factories.devices(300, seed=1)
    again = operating.choose(_y(val["gender"], classes[1]), _served_p(op_model, val.drop(columns=["gender"])),
                             classes, goal)
    assert points == operating.manifest_part(again)
    # the test channel would move them: the thresholds are not the test data's
    test = _flipped(factories.devices(300, seed=2))
    leak = operating.choose(_y(test["gender"], classes[1]), _served_p(op_model, test.drop(columns=["gender"])),
                            classes, goal)
    assert leak["thresholds"] != points["thresholds"]
    assert manifest["data_fingerprint"]["validation"] and points["validation_rows"] == 300


def test_thresholds_come_from_the_validation_fraction_not_the_rows_fitted(op_numeric: MLPaths) -> None:
    manifest = _manifest(op_numeric)
    frame = pd.read_csv(op_numeric.channel("train") / "numeric.csv")
    order = np.random.default_rng(0).permutation(len(frame))  # the task's split: seed 0, 30%
    held, fitted = frame.iloc[order[:150]], frame.iloc[order[150:]]
    goal = {"0": 0.7, "1": 0.7}

    def chosen(part: pd.DataFrame) -> dict[str, Any]:
        p = _served_p(op_numeric, part.drop(columns=["label"]).reset_index(drop=True))
        return operating.manifest_part(operating.choose(_y(part["label"], 1), p, [0, 1], goal))

    assert manifest["operating_points"] == chosen(held)
    assert manifest["operating_points"]["thresholds"] != chosen(fitted)["thresholds"]
    assert manifest["operating_points"]["validation_rows"] == 150


def test_the_report_manifest_and_log_say_which_class_cannot_reach_its_target(
        op_model: MLPaths, caplog: pytest.LogCaptureFixture) -> None:
    manifest = _manifest(op_model)
    points = manifest["operating_points"]
    assert points["thresholds"]["F"] is None and 0.5 <= points["thresholds"]["M"] < 1
    assert points["precision_lower_bound"]["M"] >= 0.75 and points["support"]["M"] > 0
    assert points["coverage"]["M"] == points["support"]["M"] / 300
    statement = points["not_reached"]["F"]
    assert statement.startswith("F cannot reach the target precision 0.97 at any threshold on the 300 "
                                "validation devices") and statement.endswith("F devices are never labelled")
    assert manifest["metrics"]["coverage_F"] == 0.0 and manifest["metrics"]["coverage_M"] == points["coverage"]["M"]
    out = op_model.output_data_dir
    report = (out / "evaluation.md").read_text()
    assert "| F | 0.97 | none: never labelled |" in report and statement in report
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["operating_points"]["not_reached"]["F"] == statement
    curve = evaluation["operating_points"]["curve"]["M"]
    assert curve and {"threshold", "support", "coverage", "precision", "precision_lower_bound"} <= set(curve[0])
    assert (out / "precision_coverage.png").read_bytes()[:4] == b"\x89PNG"
    # the same words in the job's log
    paths = factories.opt_ml(op_model.base.parent / "again" / "opt_ml", {**factories.FAST_XGB, **TARGETS},
                             {"train": {}, "validation": {}})
    factories.write_devices(paths, "train", rows=400, seed=0)
    factories.write_devices(paths, "validation", rows=300, seed=1)
    with caplog.at_level("INFO", logger="training.gender"):
        cli.run(paths, StopFlag())
    assert statement in [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert _manifest(paths)["operating_points"] == points


def test_a_target_for_an_unknown_class_or_without_validation_fails_before_fitting(opt_ml: MLPaths) -> None:
    factories.opt_ml(opt_ml.base, {"algorithm": "logreg", "target_precision_W": 0.8}, {"train": {}})
    factories.write_devices(opt_ml, rows=100)
    assert cli.main() == 1
    first = opt_ml.failure.read_text().splitlines()[0]
    assert first == ("ClientError: Hyperparameter 'target_precision_W' names the class 'W', but the labels "
                     "are ['F', 'M']; use target_precision_F or target_precision_M")
    factories.opt_ml(opt_ml.base, {"algorithm": "logreg", "target_precision": 0.8, "validation_fraction": 0},
                     {"train": {}})
    assert cli.main() == 1
    assert opt_ml.failure.read_text().startswith("ClientError: target_precision needs a validation split")
    assert not (opt_ml.model_dir / "model.json").exists()


def test_a_model_without_targets_answers_as_before(gender_model: MLPaths) -> None:
    manifest = _manifest(gender_model)
    assert "operating_points" not in manifest and "coverage_M" not in manifest["metrics"]
    app = _app(gender_model)
    body = app.test_client().post("/invocations", json=_records(2)).get_json()
    assert [list(r) for r in body["predictions"]] == [["device_id", "label", "probability", "probability_M"]] * 2
    csv = app.test_client().post("/invocations", json=_records(2), headers={"Accept": "text/csv"})
    assert [line.count(",") for line in csv.get_data(as_text=True).splitlines()] == [1, 1]


# --- every door --------------------------------------------------------------------------------
def _app(paths: MLPaths, **env: str) -> Flask:
    settings = Settings.from_env({"SM_BASE_DIR": str(paths.base), **env})
    app = create_app(settings)
    if app.extensions.get("portal") is not None:
        _OPEN.append(app.extensions["portal"])
    assert app.extensions["model"].wait(30), app.extensions["model"].reason
    return app


def _records(n: int, seed: int = 21) -> list[dict[str, Any]]:
    frame = factories.devices(n, seed=seed).drop(columns=["gender"])
    return list(json.loads(frame.to_json(orient="records")))


def _expected(paths: MLPaths, records: list[dict[str, Any]]) -> list[str]:
    rule = OperatingPoints.from_manifest(_manifest(paths))
    assert rule is not None
    return rule.labels(_served_p(paths, pd.DataFrame.from_records(records)))


def _csv_body(records: list[dict[str, Any]], tmp: Path) -> bytes:
    target = tmp / "records.csv"
    synth.write(pd.DataFrame.from_records(records), target, "csv")
    return target.read_bytes()


@pytest.fixture(scope="module")
def repository(op_model: MLPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("op-repo") / "models"
    shutil.copytree(op_model.model_dir, root / "gender" / "v1")
    return root


@pytest.mark.parametrize("fast", ["true", "false"])
def test_every_door_gives_the_same_audience_label(op_model: MLPaths, repository: Path, tmp_path: Path,
                                                   fast: str) -> None:
    records = _records(40)
    expected = _expected(op_model, records)
    assert set(expected) == {"M", NO_LABEL}  # some labelled, some not, never F
    app = _app(op_model, MLSHIP_FAST=fast, MLAPP_MODEL_REPOSITORY=str(repository),
               MLAPP_DATABASE_URL=f"sqlite:///{tmp_path / 'mlapp.db'}", MLAPP_DATA_DIR=str(tmp_path / "mlapp"),
               MLAPP_JOB_WORKER="false", MLAPP_ALLOWED_ROOTS=str(tmp_path), MLAPP_JOB_CHUNK_ROWS="15")
    client = app.test_client()
    doors: dict[str, list[Any]] = {}
    batch = client.post("/invocations", json=records).get_json()["predictions"]
    doors["json batch"] = [r[KEY] for r in batch]
    assert list(batch[0]) == ["device_id", "label", "probability", "probability_M", KEY]
    doors["json one by one"] = [client.post("/invocations", json=[r]).get_json()["predictions"][0][KEY]
                                for r in records]
    doors["json few"] = [r[KEY] for i in range(0, 40, 8)
                         for r in client.post("/invocations", json=records[i:i + 8]).get_json()["predictions"]]
    lines = client.post("/invocations", data="\n".join(json.dumps(r) for r in records),
                        headers={"Content-Type": "application/jsonlines", "Accept": "application/jsonlines"})
    doors["json lines"] = [json.loads(line)[KEY] for line in lines.get_data(as_text=True).splitlines()]
    csv = client.post("/invocations", data=_csv_body(records, tmp_path),
                      headers={"Content-Type": "text/csv", "Accept": "text/csv"}).get_data(as_text=True)
    cells = [line.split(",") for line in csv.splitlines()]
    assert all(len(c) == 3 for c in cells)  # label, probability, audience_label (empty: no label)
    doors["csv"] = [c[2] for c in cells]
    assert client.post("/models", json={"model_name": "op", "url": str(op_model.model_dir)}).status_code == 200
    doors["multi-model"] = [r[KEY] for r in client.post("/models/op/invoke", json=records).get_json()["predictions"]]
    online = client.post("/api/providers/prediction/invoke", json={"model": "gender", "input": records})
    doors["portal online"] = [r[KEY] for r in online.get_json()["predictions"]]
    created = client.post("/api/providers/prediction/create", json={"model": "gender", "input": records})
    portal = app.extensions["portal"]
    while portal.run_one():
        pass
    pid = created.get_json()["prediction_id"]
    done = client.get(f"/api/providers/prediction/check?prediction_id={pid}&limit=100").get_json()
    doors["portal batch"] = [r[KEY] for r in done["results"]["rows"]]
    predictor = predictors.load(op_model.model_dir, fast=fast == "true")
    table = scoring.to_arrow(scoring.predict(predictor, pa.Table.from_pylist(records)))
    assert table.schema.field(KEY).type == pa.string()
    doors["spark"] = table.column(KEY).to_pylist()
    for door, got in doors.items():
        assert got == expected, door


def test_aws_keys_keep_their_meaning_and_the_decision_comes_last(op_model: MLPaths) -> None:
    records = _records(12)
    expected = _expected(op_model, records)
    client = _app(op_model, SAGEMAKER_INFERENCE_OUTPUT="predicted_label,probability").test_client()
    rows = client.post("/invocations", json=records).get_json()["predictions"]
    assert [list(r) for r in rows] == [["device_id", "predicted_label", "probability", KEY]] * 12
    assert [r[KEY] for r in rows] == expected
    csv = client.post("/invocations", json=records, headers={"Accept": "text/csv"}).get_data(as_text=True)
    assert [line.split(",")[2] for line in csv.splitlines()] == expected


@pytest.mark.parametrize("fast", ["true", "false"])
def test_numeric_csv_fast_and_general_paths_answer_the_same_bytes(op_numeric: MLPaths, fast: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows walked in C from the body's bytes (up to 128), a batch parsed in C, and the general
    decoder answer the same bytes, each line ending in its audience_label ('0', '1' or empty)."""
    from inference.families import gender

    client = _app(op_numeric, MLSHIP_FAST=fast).test_client()
    rng = np.random.default_rng(4)
    seen: set[str] = set()
    for n in (1, 3, 8, 40, 300):
        x = rng.normal(size=(n, 6))
        body = "\n".join(",".join(f"{v:.6g}" for v in row) for row in x) + "\n"
        expected = OperatingPoints.from_manifest(_manifest(op_numeric))
        assert expected is not None
        labels = expected.labels(_served_p(op_numeric, pd.read_csv(io.StringIO(body), header=None)))
        for accept in ("text/csv", "application/json", "application/jsonlines"):
            headers = {"Content-Type": "text/csv", "Accept": accept}
            answer = client.post("/invocations", data=body, headers=headers).get_data()
            with monkeypatch.context() as patch:
                patch.setattr(gender.Predictor, "transform", lambda self, body, media, accept: None)
                general = client.post("/invocations", data=body, headers=headers).get_data()
            assert answer == general, (n, accept)
            if accept == "text/csv":
                got = [line.rsplit(",", 1)[1] for line in answer.decode().splitlines()]
                assert got == labels
                seen |= set(got)
    assert seen == {"0", "1", NO_LABEL}


# --- the portal's comparison -------------------------------------------------------------------
def test_the_comparison_shows_each_versions_coverage_at_its_thresholds(op_model: MLPaths, repository: Path,
                                                                       tmp_path: Path) -> None:
    """v2: the same trees with a stricter M threshold; both compared on the same records with truth."""
    from inference.portal import comparison

    v2 = repository / "gender" / "v2"
    if not v2.exists():
        shutil.copytree(repository / "gender" / "v1", v2)
        manifest = _manifest(op_model)
        manifest["operating_points"]["thresholds"]["M"] = 0.9
        (v2 / "model.json").write_text(json.dumps(manifest))
    app = _app(op_model, MLAPP_MODEL_REPOSITORY=str(repository), MLAPP_JOB_WORKER="false",
               MLAPP_DATABASE_URL=f"sqlite:///{tmp_path / 'mlapp.db'}", MLAPP_DATA_DIR=str(tmp_path / "mlapp"))
    client = app.test_client()
    frame = factories.devices(120, seed=30)
    records = list(json.loads(frame.to_json(orient="records")))  # with their truth, 'gender'
    body = client.post("/api/providers/prediction/invoke", json={
        "model": {"name": "gender", "version": "v1"}, "input": records, "compare_with": "v2"}).get_json()
    decided = body["comparison"]["operating"]
    assert decided["key"] == KEY and decided["classes"] == ["F", "M"]
    for side, answer in (("a", body["predictions"]), ("b", body["shadow"]["predictions"])):
        labels = [r[KEY] for r in answer]
        assert decided[side]["coverage"] == {c: labels.count(c) / 120 for c in ("F", "M")}
        assert decided[side]["coverage"]["F"] == 0.0 and decided[side]["unlabelled"] == labels.count("") / 120
        right = [t == "M" for t, v in zip(frame["gender"], labels, strict=True) if v == "M"]
        assert decided[side]["achieved"]["M"] == {"labelled": len(right),
                                                  "precision": float(np.mean(right)) if right else None}
        assert decided[side]["curve"]["M"] and decided[side]["curve"]["F"]
    assert decided["b"]["coverage"]["M"] < decided["a"]["coverage"]["M"]
    # the portal hands each version's operating points over: its target and thresholds beside it
    assert decided["a"]["thresholds"]["M"] != 0.9 and decided["b"]["thresholds"]["M"] == 0.9
    # with the manifests' operating points, their targets and thresholds are shown beside them
    rows = {k: [{"input_sha256": str(i), "label": "M", "score": 0.8, "truth": None, "latency_ms": 1,
                 "output": json.dumps({KEY: v})} for i, v in enumerate(values)]
            for k, values in (("a", ["M", "", "M", ""]), ("b", ["", "", "M", ""]))}
    pred = {"id": "x", "model_name": "gender", "model_version": "1"}
    points = _manifest(op_model)["operating_points"]
    got = comparison.compare(pred, pred, rows["a"], rows["b"], points=(points, None))["operating"]
    assert got["a"]["coverage"] == {"M": 0.5} and got["b"]["coverage"] == {"M": 0.25}
    assert got["a"]["target_precision"] == {"F": 0.97, "M": 0.75} and "thresholds" not in got["b"]
    plain = [{**r, "output": json.dumps({"label": "M"})} for r in rows["a"]]
    assert "operating" not in comparison.compare(pred, pred, plain, plain)
