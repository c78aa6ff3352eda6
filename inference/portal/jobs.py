"""The portal's service: create, check, list, cancel and retry predictions; online invokes with an
optional shadow model; comparisons. State changes follow ``status.TRANSITIONS`` (a 409 otherwise),
batch jobs run in ``runner.JobRunner``, predictions go through the shared data plane.

Create and invoke are idempotent under a client-chosen request id: the first call with an id is
recorded under it, and a retry (a client's, or nginx's after a host died mid-call) answers what
was recorded instead of running again; the same id on a different request is a 409.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pandas as pd

from container.logs import prediction_id_var
from inference import explanations, predictors
from inference.codecs import Inputs
from inference.dataplane import DataPlane
from inference.errors import BadInput, Conflict, NotFound
from inference.portal import comparison
from inference.portal import requests as parse
from inference.portal.config import PortalConfig
from inference.portal.records import answer_row, result_rows, split_truth
from inference.portal.runner import JobRunner
from inference.portal.status import KINDS, TRANSITIONS, Status, allowed
from inference.portal.store import KeyTaken, Store
from inference.portal.views import public
from inference.registry import ModelEntry


class JobService:
    def __init__(self, store: Store, dataplane: DataPlane, config: PortalConfig) -> None:
        self.store = store
        self.dataplane = dataplane
        self.models = dataplane.registry
        self.config = config
        self.runner = JobRunner(store, dataplane, config)

    # --- create / check / list / cancel / retry ------------------------------------------
    def create(self, body: dict[str, Any], request_id: str | None = None, client_id: str | None = None
               ) -> tuple[dict[str, Any], bool]:
        """The queued job, and whether it was queued by an earlier call with the same request id."""
        idempotency = parse.idempotency("create", body, client_id)
        if idempotency is not None and (first := self._first(idempotency)) is not None:
            return public(first), True
        entry = self.models.resolve(*parse.model_ref(body))
        spec = parse.input_spec(body.get("input"), self.config)
        output = parse.output_location(body.get("output_location"), self.config)
        rows_total = len(spec["records"]) if "records" in spec else None
        spec["chunk_rows"] = self.config.chunk_rows
        spec["engine"] = parse.engine(body, spec, output, self.config)
        if parse.flag(body, "explain"):
            if spec["engine"] == "spark":
                raise BadInput("'explain' is for the local engine; the spark engine writes scores only")
            explanations.explainer(self.models.predictor(entry.name, entry.version)[1])  # a 400 if none
            spec["explain"] = True
        try:
            pid = self.store.insert_prediction(kind="batch", status=Status.QUEUED.value,
                                               model_name=entry.name, model_version=entry.version,
                                               input_spec=spec,
                                               output_location=output, rows_total=rows_total,
                                               request_id=request_id, idempotency=idempotency)
        except KeyTaken:  # the same request, queued by a concurrent call a moment earlier
            assert idempotency is not None
            return public(self._first_or_fail(idempotency)), True
        return public(self._get(pid)), False

    def _first(self, idempotency: tuple[str, str]) -> dict[str, Any] | None:
        """The prediction an earlier call with this request id made, or None; a 409 if that call
        was a different request."""
        key, digest = idempotency
        row = self.store.by_key(key)
        if row is not None and row["request_sha256"] != digest:
            raise Conflict(f"Request id {key.partition(':')[2]!r} was used for a different request "
                           f"(prediction {row['id']}); choose a new id for a new request")
        return row

    def _first_or_fail(self, idempotency: tuple[str, str]) -> dict[str, Any]:
        row = self._first(idempotency)
        assert row is not None  # KeyTaken is raised only when the key's row exists
        return row

    def check(self, pid: str, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        row = self._get(pid)
        out = public(row)
        if row["output_location"]:
            out["results_location"] = row["output_location"]
        else:
            results = self.store.rows(pid, offset, limit)
            out["results"] = {"offset": offset, "limit": limit, "total": self.store.row_count(pid),
                              "rows": [answer_row(r) for r in results]}
        return out

    def list_predictions(self, data: dict[str, Any], limit: int, offset: int) -> list[dict[str, Any]]:
        status, model, kind = parse.list_filters(data, tuple(Status.__members__), KINDS)
        return [public(r) for r in self.store.list_predictions(status, model, kind, limit, offset)]

    def cancel(self, pid: str) -> dict[str, Any]:
        row = self._get(pid)
        if not allowed("cancel", row["status"]) or not self.store.transition(
                pid, "cancel", finished_at=time.time(), lease_owner=None, lease_until=None):
            raise Conflict(f"Prediction {pid} is {self._get(pid)['status']}; only "
                           f"{' or '.join(TRANSITIONS['cancel'].source_values)} predictions can be "
                           "cancelled")
        return public(self._get(pid))

    def retry(self, pid: str) -> dict[str, Any]:
        row = self._get(pid)
        if row["kind"] != "batch":
            raise Conflict("Only batch predictions can be retried")
        if not allowed("retry", row["status"]) or not self.store.reset_for_retry(pid):
            raise Conflict(f"Prediction {pid} is {self._get(pid)['status']}; only "
                           f"{' or '.join(TRANSITIONS['retry'].source_values)} predictions can be "
                           "retried")
        return public(self._get(pid))

    # --- online ---------------------------------------------------------------------------
    def invoke(self, body: dict[str, Any], request_id: str | None = None, client_id: str | None = None
               ) -> tuple[dict[str, Any], bool]:
        """The answer, and whether it is the recorded answer of an earlier call with the same
        request id (a shadow run that call did not record yet is run now)."""
        idempotency = parse.idempotency("invoke", body, client_id)
        name, version = parse.model_ref(body)
        records = parse.inline_records(body.get("input", body.get("records")), self.config)
        explain = parse.flag(body, "explain")
        main = self._run_online(name, version, records, request_id, None, explain, idempotency)
        out = {"prediction_id": main["prediction_id"], "model": main["model"],
               "predictions": main["predictions"]}
        compare_with = body.get("compare_with")
        if compare_with:
            shadow_key = None if idempotency is None else (f"shadow-{idempotency[0]}", idempotency[1])
            shadow = self._run_online(*parse.shadow_ref(compare_with, name), records, request_id,
                                      main["prediction_id"], explain, shadow_key)
            out["shadow"] = {"prediction_id": shadow["prediction_id"], "model": shadow["model"],
                             "predictions": shadow["predictions"]}
            out["comparison"] = self.compare(main["prediction_id"], shadow["prediction_id"])
        return out, main["replayed"]

    def _run_online(self, name: str, version: str | None, records: list[dict[str, Any]],
                    request_id: str | None, compare_of: str | None, explain: bool = False,
                    idempotency: tuple[str, str] | None = None) -> dict[str, Any]:
        if idempotency is not None and (first := self._first(idempotency)) is not None:
            return self._recorded(first)
        entry, predictor = self.models.predictor(name, version)
        explainer = explanations.explainer(predictor) if explain else None
        frame, truths = split_truth(pd.DataFrame.from_records(records), predictor.outputs)
        pid, started = str(uuid.uuid4()), time.time()
        record: dict[str, Any] = {"kind": "online", "model_name": entry.name, "model_version": entry.version,
                                  "input_spec": {"inline_records": len(records)}, "started_at": started,
                                  "request_id": request_id, "compare_of": compare_of, "prediction_id": pid}
        token = prediction_id_var.set(pid)
        try:
            outputs, ms = self.dataplane.predict(predictor, Inputs(table=frame), "portal_invoke",
                                                 (entry.name, entry.version))
            why = explainer(Inputs(table=frame)) if explainer is not None else None
        except Exception as exc:  # recorded as FAILED, then answered by the error handler
            message = exc.message if isinstance(exc, BadInput) else f"{type(exc).__name__}: {exc}"
            self.store.insert_finished(**record, rows=[], error=message[:1000])
            raise
        finally:
            prediction_id_var.reset(token)
        # Recorded after the prediction, in one commit: a crash in between loses only the record of a
        # call whose caller got no answer either.
        predictions = outputs.rows()
        rows = result_rows(records, predictions, 0, ms / max(1, len(records)), truths, predictor.outputs, why)
        try:
            self.store.insert_finished(**record, rows=rows, idempotency=idempotency)
        except KeyTaken:  # a concurrent retry of this request was recorded first: answer as it did
            assert idempotency is not None
            return self._recorded(self._first_or_fail(idempotency))
        if why is not None:
            predictions = [{**p, "explanation": e} for p, e in zip(predictions, why, strict=True)]
        return {"prediction_id": pid, "model": {"name": entry.name, "version": entry.version},
                "predictions": predictions, "replayed": False}

    def _recorded(self, row: dict[str, Any]) -> dict[str, Any]:
        """An online prediction's answer as it was recorded."""
        rows = self.store.rows(row["id"], 0, 10_000_000)
        model = {"name": row["model_name"], "version": row["model_version"]}
        return {"prediction_id": row["id"], "model": model, "predictions": [answer_row(r) for r in rows],
                "replayed": True}

    # --- compare ----------------------------------------------------------------------------
    def compare(self, a: str, b: str, bins: int = 20) -> dict[str, Any]:
        ra, rb = self._get(a), self._get(b)
        rows_a, rows_b = self.store.rows(a, 0, 10_000_000), self.store.rows(b, 0, 10_000_000)
        return comparison.compare(ra, rb, rows_a, rows_b, bins, self._positive_label(ra),
                                  (self._operating_points(ra), self._operating_points(rb)))

    def _operating_points(self, prediction: dict[str, Any]) -> Any:
        """The version's operating thresholds (gender models trained with target_precision), or None."""
        entry = self._entry(prediction["model_name"], prediction["model_version"])
        return entry.manifest.get("operating_points") if entry is not None else None

    def _positive_label(self, prediction: dict[str, Any]) -> str | None:
        entry = self._entry(prediction["model_name"], prediction["model_version"])
        return predictors.describe(entry.manifest).positive_label if entry is not None else None

    def _entry(self, name: str, version: str) -> ModelEntry | None:
        try:
            return self.models.resolve(name, version)
        except NotFound:  # the model was removed since: compare without its output meaning
            return None

    # --- the batch worker ---------------------------------------------------------------------
    def start_worker(self) -> None:
        self.runner.start()

    def run_one(self) -> bool:
        return self.runner.run_one()

    def close(self) -> None:
        self.runner.stop()
        self.store.close()

    def _get(self, pid: str) -> dict[str, Any]:
        if not isinstance(pid, str) or not pid:
            raise BadInput("prediction_id is required")
        row = self.store.get(pid)
        if row is None:
            raise NotFound(f"No prediction with id '{pid}'")
        return row

