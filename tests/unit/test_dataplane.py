"""The Flask-free serving core: the data plane and the model registry, with fake predictors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inference.codecs import Inputs, Outputs
from inference.dataplane import DataPlane, Invocation
from inference.errors import ModelNotReady, NotFound
from inference.predictors import OutputSpec, Predictor
from inference.registry import ModelRegistry, ModelSlot


class FakePredictor:
    scalar_fields = frozenset({"brand"})
    outputs = OutputSpec()

    def __init__(self, name: str = "fake", version: str = "1") -> None:
        self.name, self.version, self.manifest = name, version, {}
        self.warmups = 0
        self.seen: list[Inputs] = []

    def predict(self, inputs: Inputs) -> Outputs:
        self.seen.append(inputs)
        return Outputs(columns={"score": [0.5] * inputs.n_rows}, csv_columns=["score"])

    def warmup(self) -> None:
        self.warmups += 1


class FakeRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str | None]] = []

    def sampled(self) -> bool:
        return True

    def record(self, model: Predictor, inputs: Inputs, outputs: Outputs, latency_ms: float,
               request_id: str | None) -> None:
        self.calls.append((model.name, inputs.n_rows, request_id))


def _model_dir(root: Path, name: str, version: str) -> Path:
    folder = root / name / version
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"family": "fake", "algorithm": "fake",
                                                   "created_at": version}))
    return folder


def test_invoke_decodes_predicts_encodes_and_records() -> None:
    model = FakePredictor()
    recorder = FakeRecorder()
    plane = DataPlane(ModelRegistry(ModelSlot(predictor=model), None), "application/json", recorder=recorder)
    answer = plane.invoke(Invocation(b"1,2\n3,4\n", "text/csv", "text/csv", request_id="r1"))
    assert (answer.status, answer.content_type, answer.body) == (200, "text/csv", b"0.5\n0.5\n")
    assert recorder.calls == [("fake", 2, "r1")]
    assert model.warmups == 1  # the slot warmed it before it could answer


def test_the_models_decoding_hint_keeps_a_record_with_list_fields_one_record() -> None:
    model = FakePredictor()
    plane = DataPlane(ModelRegistry(ModelSlot(predictor=model), None), "application/json")
    plane.invoke(Invocation(b'{"brand": ["x"], "apps": ["a"]}', "application/json"))
    plane.invoke(Invocation(b'{"other": ["x", "y"], "apps": ["a", "b"]}', "application/json"))
    assert [i.n_rows for i in model.seen] == [1, 2]  # a column table without the hint


def test_an_empty_body_is_204_and_nothing_is_recorded() -> None:
    recorder = FakeRecorder()
    plane = DataPlane(ModelRegistry(ModelSlot(predictor=FakePredictor()), None), "application/json",
                      recorder=recorder)
    assert plane.invoke(Invocation(b"", "text/csv")).status == 204 and recorder.calls == []


def test_a_model_still_loading_is_503_with_its_reason() -> None:
    plane = DataPlane(ModelRegistry(ModelSlot(), None), "application/json")
    with pytest.raises(ModelNotReady, match="no model configured"):
        plane.invoke(Invocation(b"1", "text/csv"))


def test_registry_warms_every_model_it_hands_out_and_evicts_the_oldest(tmp_path: Path) -> None:
    loaded: list[FakePredictor] = []

    def loader(path: Path, threads: int, name: str | None) -> Predictor:
        loaded.append(FakePredictor(str(name), path.name))
        return loaded[-1]

    for version in ("v1", "v2", "v3"):
        _model_dir(tmp_path, "m", version)
    registry = ModelRegistry(ModelSlot(), None, tmp_path, max_loaded=2, loader=loader)
    for version in ("v1", "v2", "v1", "v3"):
        registry.predictor("m", version)
    assert [p.version for p in loaded] == ["v1", "v2", "v3"] and all(p.warmups == 1 for p in loaded)
    registry.predictor("m", "v2")  # evicted when v3 came in (v1 was used more recently)
    assert [p.version for p in loaded] == ["v1", "v2", "v3", "v2"]
    assert registry.resolve("m").version == "v3"
    with pytest.raises(NotFound, match="versions: v1, v2, v3"):
        registry.resolve("m", "v9")


def test_the_default_model_is_one_copy_whichever_door_asks(tmp_path: Path) -> None:
    default_dir = _model_dir(tmp_path, "default", "model")
    calls: list[Any] = []

    def loader(path: Path, threads: int, name: str | None) -> Predictor:
        calls.append(path)
        return FakePredictor("default")

    registry = ModelRegistry.for_directory(default_dir, None, 1, None, load_wait=5, loader=loader)
    assert registry.default.wait(5)
    entry, through_repository = registry.predictor("fake")  # the manifest's name for the default model
    assert entry.path == default_dir and through_repository is registry.default_model()
    assert calls == [default_dir]
