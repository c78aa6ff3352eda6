"""The data plane: select the model, decode, predict, encode, record. No HTTP objects in here.

/invocations, the multi-model routes and the portal (online invokes and batch chunks) all
predict through one ``DataPlane``; the routes only turn requests into an ``Invocation`` and an
``Answer`` back into a response. What records calls (data capture, the portal) plugs in as a
``Recorder``: the hosting core knows nothing of the portal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from container.mediatypes import CSV, JSON
from inference import codecs, explanations, metrics
from inference.codecs import Inputs, Outputs
from inference.errors import BadInput
from inference.predictors import Predictor
from inference.registry import ModelRegistry


@dataclass(slots=True)
class Invocation:
    """One /invocations-style request as the data plane sees it."""

    body: bytes
    content_type: str | None = None
    accept: str | None = None
    target: str | None = None  # X-Amzn-SageMaker-Target-Model, or a multi-model name
    request_id: str | None = None
    explain: str | None = None  # X-Amzn-SageMaker-Enable-Explanations: Clarify's envelope


@dataclass(slots=True)
class Answer:
    body: bytes
    status: int
    content_type: str | None
    model: Predictor


class Recorder(Protocol):
    """Records a sampled share of /invocations calls (SageMaker-style data capture)."""

    def sampled(self) -> bool: ...

    def record(self, model: Predictor, inputs: Inputs, outputs: Outputs, latency_ms: float,
               request_id: str | None) -> None: ...


class DataPlane:
    def __init__(self, registry: ModelRegistry, default_accept: str, batch: bool = False,
                 recorder: Recorder | None = None, fast: bool = True) -> None:
        self.registry = registry
        self.default_accept = default_accept
        self.batch = batch
        self.recorder = recorder
        self.fast = fast  # MLSHIP_FAST: the model's own answer (its transform hook)
        self._types: dict[tuple[str | None, str | None], tuple[str, str, str]] = {}

    def select(self, target: str | None = None) -> Predictor:
        """The default model, or the one a target-model reference names."""
        return self.registry.target(target) if target else self.registry.default_model()

    def predict(self, model: Predictor, inputs: Inputs, door: str,
                known_as: tuple[str, str] | None = None) -> tuple[Outputs, float]:
        """Outputs and milliseconds of one prediction, counted per door and per model under the
        (name, version) the caller knows it by (``known_as``: a repository entry's)."""
        started = time.perf_counter()
        with np.errstate(over="raise"):  # huge inputs overflow float32 features (the property run)
            try:
                outputs = model.predict(inputs)
            except FloatingPointError:
                raise BadInput(codecs.TOO_LARGE) from None
        ms = (time.perf_counter() - started) * 1000
        name, version = known_as or (model.name, model.version)
        metrics.rows_predicted(door, name, version, inputs.n_rows)
        return outputs, ms

    def types(self, content_type: str | None, accept: str | None, body: bytes) -> tuple[str, str, str]:
        """Request media type, its charset and the response type: 415 and 406 as ``codecs`` says.
        A client sends the same two headers request after request: their answer is kept (for a
        few hundred pairs), one lookup where there were two calls and two caches."""
        pair = (content_type, accept)
        known = self._types.get(pair)
        if known is not None:
            return known
        response = codecs.negotiate(accept, self.default_accept)  # first, as before: a 406 before a 415
        found = (*codecs.request_type(content_type, body), response)
        if content_type and len(self._types) < 256:  # without one the body's first byte decides
            self._types[pair] = found
        return found

    def invoke(self, call: Invocation, model: Predictor | None = None) -> Answer:
        """Decode, predict, encode (and capture): the body of /invocations and its MME twin."""
        if model is None:  # the default model once it is ready, without select()'s calls
            model = self.registry.default.predictor if not call.target else None
            model = model or self.select(call.target)
        media, charset, accept = self.types(call.content_type, call.accept, call.body)
        select = explanations.selector(call.explain) if call.explain is not None else None
        recorder = self.recorder
        sampled = recorder is not None and recorder.sampled()
        # The model's own answer first (the speed layer's hook), where it has one: never for a
        # sampled call, whose inputs the recorder keeps, nor for JSON Lines made of JSON in batch
        # mode. A predictor handed to create_app may predate the hook: then it has none.
        if self.fast and not sampled and select is None and (accept == CSV or not self.batch):
            transform = getattr(model, "transform", None)
            done = transform(call.body, media, accept) if transform is not None else None
            if done is not None:
                metrics.rows_predicted("invocations", model.name, model.version, done[1])
                return Answer(done[0], 200, accept, model)
        inputs = codecs.decode(call.body, media, charset, getattr(model, "scalar_fields", frozenset()))
        if inputs.n_rows == 0:
            if inputs.table is not None and len(inputs.table.columns):
                # A CSV header without rows: its columns are still checked (a 400 naming the
                # columns the model expects), so a wrong header is not answered as an empty success.
                model.predict(inputs)
            return Answer(b"", 204, None, model)
        outputs, ms = self.predict(model, inputs, "invocations")
        if sampled:
            assert recorder is not None
            recorder.record(model, inputs, outputs, ms, call.request_id)
        payload, content_type = codecs.encode(outputs, accept, self.batch)
        if select is not None:  # the plain answer inside Clarify's envelope, with the attributions
            payload = explanations.envelope(model, inputs, outputs, accept, payload, content_type, select)
            content_type = JSON
        return Answer(payload, 200, content_type, model)
