"""The batch-job runner inside each `serve` process: claim, chunk, lease, resume.

A job is claimed with a lease; its input streams in chunks whose result rows (or result part
files) commit together with the progress counter, and each commit renews the lease. A job
whose worker died is claimed again once its lease expired and resumes after the last
committed chunk, so nothing is lost or duplicated.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from typing import Any

import pandas as pd

from container.logs import prediction_id_var
from inference import explanations
from inference.codecs import Inputs
from inference.dataplane import DataPlane
from inference.errors import BadInput, NotFound
from inference.portal import sources
from inference.portal.config import PortalConfig
from inference.portal.health import RateLimitedLog
from inference.portal.records import frame_records, result_rows, split_truth
from inference.portal.spark_engine import SparkEngine
from inference.portal.store import Claim, Store

log = logging.getLogger("inference.portal")
POLL_SECONDS = 0.5  # how often an idle worker looks for queued jobs


class JobRunner:
    def __init__(self, store: Store, dataplane: DataPlane, config: PortalConfig) -> None:
        self.store = store
        self.dataplane = dataplane
        self.config = config
        self.owner = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = RateLimitedLog(log)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mlapp-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_one()
            except Exception:  # the loop must survive a bad database moment
                self._errors.exception("job worker error")
                worked = False
            if not worked:
                self._stop.wait(POLL_SECONDS)

    def run_one(self) -> bool:
        """Claim and run one job; False when there was none."""
        claim = self.store.claim_next(self.owner, self.config.lease_seconds)
        if claim is None:
            return False
        token = prediction_id_var.set(claim.prediction_id)
        heartbeat = Heartbeat(self.store, claim, self.config.lease_seconds)
        try:
            self._process(claim)
        finally:
            heartbeat.stop()
            prediction_id_var.reset(token)
        return True

    def _process(self, claim: Claim) -> None:
        row = self.store.get(claim.prediction_id)
        assert row is not None
        spec = json.loads(row["input_spec"])
        chunk_rows = int(spec.get("chunk_rows", self.config.chunk_rows))
        done = int(row["rows_done"] or 0)
        log.info("running prediction job (attempt %d, resuming after %d rows)", row["attempts"], done)
        frames: Any = None
        try:
            if spec.get("engine") == "spark":
                entry = self.dataplane.registry.resolve(row["model_name"], row["model_version"])
                SparkEngine(self.store, self.config, self._stop).run(claim, row, spec, entry.path)
                return
            _, predictor = self.dataplane.registry.predictor(row["model_name"], row["model_version"])
            explainer = explanations.explainer(predictor) if spec.get("explain") else None
            part = done // chunk_rows
            frames = self._frames(spec, chunk_rows, part)
            started, resumed_at = time.monotonic(), done
            for frame in frames:
                if self._stop.is_set():
                    return  # the lease will expire and another worker resumes
                frame, truths = split_truth(frame, predictor.outputs)
                outputs, ms = self.dataplane.predict(predictor, Inputs(table=frame), "batch",
                                                     (row["model_name"], row["model_version"]))
                why = explainer(Inputs(table=frame)) if explainer is not None else None
                if row["output_location"]:
                    kind = "s3" if row["output_location"].startswith("s3://") else "file"
                    lines = outputs.jsonl() if why is None else explained_lines(outputs.rows(), why)
                    sources.write_part(kind, row["output_location"], part, lines)
                    rows: list[dict[str, Any]] = []
                else:
                    rows = result_rows(frame_records(frame), outputs.rows(), done, ms / max(1, len(frame)),
                                       truths, predictor.outputs, why)
                if not self.store.commit_chunk(claim, rows, done + len(frame), self.config.lease_seconds):
                    log.warning("lost the lease (cancelled or taken over); stopping this attempt")
                    return
                done += len(frame)
                part += 1
                self._pace(started, done - resumed_at)
            self.store.finish(claim, "succeed", rows_total=done)
            log.info("prediction job succeeded: %d rows", done)
        except (BadInput, NotFound) as exc:
            self.store.finish(claim, "fail", error=exc.message)
        except Exception as exc:
            log.exception("prediction job failed")
            self.store.finish(claim, "fail", error=f"{type(exc).__name__}: {exc}"[:1000])
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def _pace(self, started: float, rows: int) -> None:
        """Hold the job to MLAPP_JOB_MAX_ROWS_PER_SECOND (the heartbeat keeps the lease meanwhile)."""
        cap = self.config.max_rows_per_second
        if cap > 0:
            self._stop.wait(max(0.0, started + rows / cap - time.monotonic()))

    def _frames(self, spec: dict[str, Any], chunk_rows: int, skip: int) -> Any:
        if "records" in spec:
            frame = pd.DataFrame.from_records(spec["records"])
            return (frame.iloc[i:i + chunk_rows].reset_index(drop=True)
                    for i in range(skip * chunk_rows, len(frame), chunk_rows))
        path = sources.local_copy(spec["kind"], spec["where"], self.config.workdir)
        return sources.chunks(path, spec["format"], chunk_rows, skip)


def explained_lines(predictions: list[dict[str, Any]], why: list[dict[str, Any]]) -> str:
    """JSON Lines of predictions, each with its ``explanation``."""
    return "".join(json.dumps({**p, "explanation": e}, ensure_ascii=False, default=str) + "\n"
                   for p, e in zip(predictions, why, strict=True))


class Heartbeat:
    """Renews a claimed job's lease every third of its length, however long a chunk takes: a slow
    chunk no longer loses its lease (and its work) to another worker."""

    def __init__(self, store: Store, claim: Claim, lease_seconds: float) -> None:
        self.store, self.claim, self.lease = store, claim, lease_seconds
        self._stop = threading.Event()
        self._errors = RateLimitedLog(log)
        self._thread = threading.Thread(target=self._run, name="mlapp-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                if not self.store.renew(self.claim, self.lease):
                    return  # cancelled or taken over: the next commit sees it and stops
            except Exception:  # a store hiccup: the next beat tries again
                self._errors.exception("lease renewal failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
