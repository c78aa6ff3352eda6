"""The portal's logic: prediction jobs and their state machine, online invokes, comparisons.

States: QUEUED -> RUNNING -> SUCCEEDED | FAILED, and CANCELLED from QUEUED or RUNNING;
retry takes FAILED or CANCELLED back to QUEUED. Anything else is a 409. Batch jobs run in a
background worker inside each `serve` process: a job is claimed with a lease, processed in
chunks whose result rows commit together with the progress counter, and the lease is renewed
each chunk; a job whose worker died is picked up again once its lease expires and resumes
after the last committed chunk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from container.logs import prediction_id_var
from inference import metrics
from inference.codecs import Inputs
from inference.errors import BadInput, Conflict, NotFound
from inference.portal import sources
from inference.portal.repository import Repository
from inference.portal.store import Claim, Store

log = logging.getLogger("inference.portal")
TRUTH_COLUMNS = ("truth", "label", "gender", "target")


class Status(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TRANSITIONS: dict[str, set[Status]] = {
    "start": {Status.QUEUED},
    "succeed": {Status.RUNNING},
    "fail": {Status.RUNNING},
    "cancel": {Status.QUEUED, Status.RUNNING},
    "retry": {Status.FAILED, Status.CANCELLED},
}


def allowed(action: str, status: str) -> bool:
    return Status(status) in TRANSITIONS[action]


@dataclass(frozen=True)
class PortalConfig:
    max_inline_rows: int = 10_000
    chunk_rows: int = 50_000
    lease_seconds: float = 30.0
    poll_seconds: float = 0.5
    allowed_schemes: tuple[str, ...] = ("file", "s3")
    allowed_roots: tuple[Path, ...] = ()
    workdir: Path = Path("/tmp/mlapp")


KINDS = ("batch", "online", "capture")


def input_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _score_and_label(row: dict[str, Any]) -> tuple[str | None, float | None]:
    label = row.get("label")
    score = None
    for key, value in row.items():
        if key.startswith("probability_") or key == "score":
            score = float(value)
    return (None if label is None else str(label)), score


def result_rows(records: list[dict[str, Any]], predictions: list[dict[str, Any]], start: int,
                latency_ms: float, truths: list[Any] | None = None) -> list[dict[str, Any]]:
    """The stored rows of ``predictions`` (``Outputs.rows()``), one per input record."""
    out = []
    for n, (rec, row) in enumerate(zip(records, predictions, strict=True)):
        label, score = _score_and_label(row)
        truth = None if truths is None else truths[n]
        out.append({"row_index": start + n, "input_sha256": input_hash(rec), "label": label,
                    "score": score, "output": json.dumps(row, default=str),
                    "truth": None if truth is None or (isinstance(truth, float) and np.isnan(truth))
                    else str(truth), "latency_ms": latency_ms})
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return list(json.loads(frame.to_json(orient="records", force_ascii=False)))


def _truths(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Any] | None]:
    for column in TRUTH_COLUMNS:
        if column in frame.columns:
            return frame.drop(columns=[column]), frame[column].tolist()
    return frame, None


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A prediction as the API shows it."""
    spec = json.loads(row["input_spec"])
    started, finished = row.get("started_at"), row.get("finished_at")
    return {
        "prediction_id": row["id"], "kind": row["kind"], "status": row["status"],
        "model": {"name": row["model_name"], "version": row["model_version"]},
        "input": {k: v for k, v in spec.items() if k != "records"} | (
            {"inline_records": len(spec["records"])} if "records" in spec else {}),
        "output_location": row.get("output_location"),
        "rows_total": row.get("rows_total"), "rows_done": row.get("rows_done"),
        "progress": (row["rows_done"] / row["rows_total"]) if row.get("rows_total") else None,
        "error": row.get("error"), "attempts": row.get("attempts"), "compare_of": row.get("compare_of"),
        "created_at": _iso(row["created_at"]), "started_at": _iso(started), "finished_at": _iso(finished),
        "duration_seconds": round(finished - started, 3) if started and finished else None,
    }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"


class JobService:
    def __init__(self, store: Store, repo: Repository, config: PortalConfig) -> None:
        self.store = store
        self.repo = repo
        self.config = config
        self.owner = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed_rows = 0
        self._finish_frames: Any = None

    # --- create / check / list / cancel / retry ------------------------------------------
    def create(self, body: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
        name, version = self._model_ref(body)
        entry = self.repo.resolve(name, version)
        spec = self._input_spec(body.get("input"))
        output = body.get("output_location")
        if output is not None:
            _, where = sources.parse_location(str(output), self.config.allowed_schemes,
                                                 self.config.allowed_roots)
            output = where
        rows_total = len(spec["records"]) if "records" in spec else None
        spec["chunk_rows"] = self.config.chunk_rows
        pid = self.store.insert_prediction(kind="batch", status=Status.QUEUED.value, model_name=entry.name,
                                           model_version=entry.version, input_spec=spec,
                                           output_location=output, rows_total=rows_total,
                                           request_id=request_id)
        row = self.store.get(pid)
        assert row is not None
        return public(row)

    def check(self, pid: str, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        row = self._get(pid)
        out = public(row)
        if row["output_location"]:
            out["results_location"] = row["output_location"]
        else:
            results = self.store.rows(pid, offset, limit)
            out["results"] = {"offset": offset, "limit": limit, "total": self.store.row_count(pid),
                              "rows": [json.loads(r["output"]) for r in results]}
        return out

    def list_predictions(self, status: str | None, model: str | None, kind: str | None, limit: int,
                         offset: int) -> list[dict[str, Any]]:
        if status is not None and status not in Status.__members__:
            raise BadInput(f"status must be one of {', '.join(Status.__members__)}")
        if kind is not None and kind not in KINDS:
            raise BadInput(f"kind must be one of {', '.join(KINDS)}")
        if model is not None and not (isinstance(model, str) and model):
            raise BadInput("model must be a non-empty model name")
        return [public(r) for r in self.store.list_predictions(status, model, kind, limit, offset)]

    def cancel(self, pid: str) -> dict[str, Any]:
        row = self._get(pid)
        if not allowed("cancel", row["status"]) or not self.store.transition(
                pid, [s.value for s in TRANSITIONS["cancel"]], Status.CANCELLED.value,
                finished_at=time.time(), lease_owner=None, lease_until=None):
            raise Conflict(f"Prediction {pid} is {self._get(pid)['status']}; only QUEUED or RUNNING "
                           "predictions can be cancelled")
        return public(self._get(pid))

    def retry(self, pid: str) -> dict[str, Any]:
        row = self._get(pid)
        if row["kind"] != "batch":
            raise Conflict("Only batch predictions can be retried")
        if not allowed("retry", row["status"]) or not self.store.reset_for_retry(pid):
            raise Conflict(f"Prediction {pid} is {self._get(pid)['status']}; only FAILED or CANCELLED "
                           "predictions can be retried")
        return public(self._get(pid))

    # --- online ---------------------------------------------------------------------------
    def invoke(self, body: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
        name, version = self._model_ref(body)
        records = self._inline(body.get("input", body.get("records")))
        frame, truths = _truths(pd.DataFrame.from_records(records))
        main = self._run_online(name, version, records, frame, truths, request_id, None)
        out = {"prediction_id": main["prediction_id"], "model": main["model"],
               "predictions": main["predictions"]}
        compare_with = body.get("compare_with")
        if compare_with:
            other_name, other_version = self._model_ref(
                compare_with if isinstance(compare_with, dict) else {"model": {"name": name,
                                                                              "version": compare_with}})
            shadow = self._run_online(other_name, other_version, records, frame, truths, request_id,
                                      main["prediction_id"])
            out["shadow"] = {"prediction_id": shadow["prediction_id"], "model": shadow["model"],
                             "predictions": shadow["predictions"]}
            out["comparison"] = self.compare(main["prediction_id"], shadow["prediction_id"])
        return out

    def _run_online(self, name: str, version: str | None, records: list[dict[str, Any]],
                    frame: pd.DataFrame, truths: list[Any] | None, request_id: str | None,
                    compare_of: str | None) -> dict[str, Any]:
        entry, predictor = self.repo.predictor(name, version)
        pid, started = str(uuid.uuid4()), time.time()
        record: dict[str, Any] = {"kind": "online", "model_name": entry.name, "model_version": entry.version,
                  "input_spec": {"inline_records": len(records)}, "started_at": started,
                  "request_id": request_id, "compare_of": compare_of, "prediction_id": pid}
        token = prediction_id_var.set(pid)
        try:
            t0 = time.perf_counter()
            outputs = predictor.predict(Inputs(table=frame))
            ms = (time.perf_counter() - t0) * 1000
        except Exception as exc:  # recorded as FAILED, then answered by the error handler
            message = exc.message if isinstance(exc, BadInput) else f"{type(exc).__name__}: {exc}"
            self.store.insert_finished(**record, rows=[], error=message[:1000])
            raise
        finally:
            prediction_id_var.reset(token)
        # Recorded after the prediction, in one commit: a crash in between loses only the record of a
        # call whose caller got no answer either.
        predictions = outputs.rows()
        self.store.insert_finished(**record, rows=result_rows(records, predictions, 0,
                                                              ms / max(1, len(records)), truths))
        metrics.ROWS.labels("portal_invoke", entry.name, entry.version).inc(len(records))
        return {"prediction_id": pid, "model": {"name": entry.name, "version": entry.version},
                "predictions": predictions}

    # --- compare ----------------------------------------------------------------------------
    def compare(self, a: str, b: str, bins: int = 20) -> dict[str, Any]:
        ra, rb = self._get(a), self._get(b)
        rows_a = {r["input_sha256"]: r for r in self.store.rows(a, 0, 10_000_000)}
        rows_b = {r["input_sha256"]: r for r in self.store.rows(b, 0, 10_000_000)}
        common = sorted(set(rows_a) & set(rows_b))
        result: dict[str, Any] = {
            "a": {"prediction_id": a, "model": {"name": ra["model_name"], "version": ra["model_version"]}},
            "b": {"prediction_id": b, "model": {"name": rb["model_name"], "version": rb["model_version"]}},
            "rows_compared": len(common), "rows_only_in_a": len(rows_a) - len(common),
            "rows_only_in_b": len(rows_b) - len(common),
        }
        if not common:
            return result
        la = [rows_a[h]["label"] for h in common]
        lb = [rows_b[h]["label"] for h in common]
        if any(v is not None for v in la):
            result["agreement_rate"] = float(np.mean([x == y for x, y in zip(la, lb, strict=True)]))
            confusion: dict[str, dict[str, int]] = {}
            for x, y in zip(la, lb, strict=True):
                confusion.setdefault(str(x), {}).setdefault(str(y), 0)
                confusion[str(x)][str(y)] += 1
            result["label_confusion"] = confusion
        sa_ = np.array([rows_a[h]["score"] if rows_a[h]["score"] is not None else np.nan for h in common])
        sb_ = np.array([rows_b[h]["score"] if rows_b[h]["score"] is not None else np.nan for h in common])
        ok = np.isfinite(sa_) & np.isfinite(sb_)
        if ok.any():
            delta = sb_[ok] - sa_[ok]
            counts, edges = np.histogram(delta, bins=bins)
            result["score_delta"] = {
                "mean": float(delta.mean()), "mean_abs": float(np.abs(delta).mean()),
                "max_abs": float(np.abs(delta).max()), "histogram": {"edges": edges.tolist(),
                                                                      "counts": counts.tolist()}}
            result["scores"] = {"a": sa_[ok][:2000].tolist(), "b": sb_[ok][:2000].tolist()}
        truths = [rows_a[h]["truth"] for h in common]
        if any(t is not None for t in truths):
            result["quality"] = {side: self._quality(truths, [rows[h] for h in common])
                                 for side, rows in (("a", rows_a), ("b", rows_b))}
        la_ms = [rows_a[h]["latency_ms"] or 0 for h in common]
        lb_ms = [rows_b[h]["latency_ms"] or 0 for h in common]
        result["latency_ms_per_row"] = {"a": float(np.mean(la_ms)), "b": float(np.mean(lb_ms))}
        return result

    @staticmethod
    def _quality(truths: list[Any], rows: list[dict[str, Any]]) -> dict[str, float]:
        known = [(t, r) for t, r in zip(truths, rows, strict=True) if t is not None]
        acc = float(np.mean([str(t) == str(r["label"]) for t, r in known])) if known else float("nan")
        out = {"labelled_rows": len(known), "accuracy": acc}
        scored = [(t, r["score"]) for t, r in known if r["score"] is not None]
        classes = sorted({str(t) for t, _ in scored})
        if len(classes) == 2:
            from sklearn.metrics import roc_auc_score

            positive = json.loads(rows[0]["output"])
            pos = next((k.removeprefix("probability_") for k in positive if k.startswith("probability_")),
                       classes[1])
            y = [1 if str(t) == pos else 0 for t, _ in scored]
            if 0 < sum(y) < len(y):
                out["roc_auc"] = float(roc_auc_score(y, [s for _, s in scored]))
        return out

    # --- batch worker --------------------------------------------------------------------------
    def start_worker(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mlapp-jobs", daemon=True)
            self._thread.start()

    def stop_worker(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def close(self) -> None:
        self.stop_worker()
        self.store.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_one()
            except Exception:  # the loop must survive a bad database moment
                log.exception("job worker error")
                worked = False
            if not worked:
                self._stop.wait(self.config.poll_seconds)

    def run_one(self) -> bool:
        claim = self.store.claim_next(self.owner, self.config.lease_seconds)
        if claim is None:
            return False
        token = prediction_id_var.set(claim.prediction_id)
        try:
            self._process(claim)
        finally:
            prediction_id_var.reset(token)
        return True

    def _process(self, claim: Claim) -> None:
        row = self.store.get(claim.prediction_id)
        assert row is not None
        spec = json.loads(row["input_spec"])
        chunk_rows = int(spec.get("chunk_rows", self.config.chunk_rows))
        done = int(row["rows_done"] or 0)
        log.info("running prediction job (attempt %d, resuming after %d rows)", row["attempts"], done)
        try:
            _, predictor = self.repo.predictor(row["model_name"], row["model_version"])
            frames = self._frames(spec, chunk_rows, done // chunk_rows)
            part = done // chunk_rows
            self._finish_frames = getattr(frames, "close", None)
            for frame in frames:
                if self._stop.is_set():
                    return  # the lease will expire and another worker resumes
                frame, truths = _truths(frame)
                t0 = time.perf_counter()
                outputs = predictor.predict(Inputs(table=frame))
                ms = (time.perf_counter() - t0) * 1000 / max(1, len(frame))
                if row["output_location"]:
                    kind = "s3" if row["output_location"].startswith("s3://") else "file"
                    body = outputs.jsonl()
                    sources.write_part(kind, row["output_location"], part, body)
                    rows: list[dict[str, Any]] = []
                else:
                    rows = result_rows(_records(frame), outputs.rows(), done, ms, truths)
                if not self.store.commit_chunk(claim, rows, done + len(frame), self.config.lease_seconds):
                    log.warning("lost the lease (cancelled or taken over); stopping this attempt")
                    return
                done += len(frame)
                part += 1
                self.processed_rows += len(frame)
                metrics.ROWS.labels("batch", row["model_name"], row["model_version"]).inc(len(frame))
            self.store.finish(claim, Status.SUCCEEDED.value, rows_total=done)
            log.info("prediction job succeeded: %d rows", done)
        except (BadInput, NotFound) as exc:
            self.store.finish(claim, Status.FAILED.value, error=exc.message)
        except Exception as exc:
            log.exception("prediction job failed")
            self.store.finish(claim, Status.FAILED.value, error=f"{type(exc).__name__}: {exc}"[:1000])
        finally:
            close, self._finish_frames = self._finish_frames, None
            if close is not None:
                close()

    def _frames(self, spec: dict[str, Any], chunk_rows: int, skip: int) -> Any:
        if "records" in spec:
            frame = pd.DataFrame.from_records(spec["records"])
            return (frame.iloc[i:i + chunk_rows].reset_index(drop=True)
                    for i in range(skip * chunk_rows, len(frame), chunk_rows))
        kind, where = spec["kind"], spec["where"]
        path = sources.local_copy(kind, where, self.config.workdir)
        return sources.chunks(path, spec["format"], chunk_rows, skip)

    # --- validation helpers ------------------------------------------------------------------------
    def _model_ref(self, body: dict[str, Any]) -> tuple[str, str | None]:
        model = body.get("model")
        if isinstance(model, str):
            return model, body.get("version")
        if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"]:
            raise BadInput("'model' must be a model name or {\"name\": ..., \"version\": ...}")
        version = model.get("version")
        if version is not None and not isinstance(version, str):
            raise BadInput("'model.version' must be a string")
        return model["name"], version

    def _inline(self, records: Any) -> list[dict[str, Any]]:
        if isinstance(records, dict) and "records" in records:
            records = records["records"]
        if not isinstance(records, list) or not records:
            raise BadInput("'input' must be a non-empty list of records (objects)")
        if len(records) > self.config.max_inline_rows:
            raise BadInput(f"At most {self.config.max_inline_rows} inline records per request; "
                           "use a location for larger inputs")
        if not all(isinstance(r, dict) for r in records):
            raise BadInput("Every inline record must be a JSON object")
        return records

    def _input_spec(self, value: Any) -> dict[str, Any]:
        if isinstance(value, list):
            return {"records": self._inline(value)}
        if not isinstance(value, dict):
            raise BadInput("'input' must be a list of records or {\"location\": ..., \"format\": ...}")
        if "records" in value:
            return {"records": self._inline(value["records"])}
        location = value.get("location")
        kind, where = sources.parse_location(location, self.config.allowed_schemes, self.config.allowed_roots)
        fmt = sources.detect_format(where, value.get("format"))
        if kind == "file" and not Path(where).is_file():
            raise BadInput(f"Input file {where} does not exist")
        return {"location": location, "kind": kind, "where": where, "format": fmt}

    def _get(self, pid: str) -> dict[str, Any]:
        if not isinstance(pid, str) or not pid:
            raise BadInput("prediction_id is required")
        row = self.store.get(pid)
        if row is None:
            raise NotFound(f"No prediction with id '{pid}'")
        return row
