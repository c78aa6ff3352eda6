"""Data capture for /invocations: a sampled share of calls recorded in the portal store.

The portal hands a ``Capture`` to the data plane as its ``Recorder``. Recording happens on a
background thread behind a bounded queue: a slow or unavailable store never blocks or breaks
a prediction; what cannot be recorded is counted and logged.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from inference import metrics
from inference.codecs import Inputs, Outputs
from inference.portal.records import result_rows
from inference.portal.store import Store
from inference.predictors import OutputSpec, Predictor

log = logging.getLogger("inference.capture")


@dataclass
class CaptureItem:
    model_name: str
    model_version: str
    request_id: str | None
    records: list[dict[str, Any]]
    outputs: Outputs
    latency_ms: float
    spec: OutputSpec
    started_at: float = field(default_factory=time.time)


class Capture:
    def __init__(self, store: Store, percent: float, max_queue: int = 1000) -> None:
        self.store = store
        self.percent = percent
        self.queue: queue.Queue[CaptureItem] = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.recorded = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        return self.percent >= 100 or (self.percent > 0 and random.random() * 100 < self.percent)

    def record(self, model: Predictor, inputs: Inputs, outputs: Outputs, latency_ms: float,
               request_id: str | None) -> None:
        if inputs.table is not None:
            records = inputs.table.to_dict(orient="records")
        else:
            assert inputs.matrix is not None
            records = [{"features": row} for row in inputs.matrix.tolist()]
        self.offer(CaptureItem(model.name, model.version, request_id, records, outputs, latency_ms,
                               model.outputs))

    def offer(self, item: CaptureItem) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            metrics.CAPTURE.labels("dropped").inc()
            if self.dropped % 100 == 1:
                log.warning("capture queue full: %d records dropped so far", self.dropped)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                self.store.insert_finished(
                    kind="capture", model_name=item.model_name, model_version=item.model_version,
                    input_spec={"inline_records": len(item.records)}, request_id=item.request_id,
                    started_at=item.started_at, rows=result_rows(
                        item.records, item.outputs.rows(), 0,
                        item.latency_ms / max(1, len(item.records)), spec=item.spec))
                self.recorded += 1
                metrics.CAPTURE.labels("recorded").inc()
            except Exception as exc:  # the store is down or slow: count, log, carry on
                self.failed += 1
                metrics.CAPTURE.labels("failed").inc()
                if self.failed % 100 == 1:
                    log.warning("capture could not record (%d failures so far): %s", self.failed, exc)
            finally:
                self.queue.task_done()
