"""Batch-job leases: a heartbeat keeps a slow chunk's lease, and a takeover needs the lease to be
expired at the moment of the claim, not only when it was read (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from container.paths import MLPaths
from inference.portal.store import Claim, Store, predictions
from tests.service.test_portal import make_app, records


def test_a_chunk_slower_than_the_lease_keeps_it(gender_model: MLPaths, model_repository: Path,
                                               database_url: str, tmp_path: Path) -> None:
    app = make_app(gender_model, model_repository, database_url, tmp_path, MLAPP_LEASE_SECONDS="1",
                   MLAPP_JOB_CHUNK_ROWS="2")
    service = app.extensions["portal"]
    pid = app.test_client().post("/api/providers/prediction/create",
                                 json={"model": "gender", "input": records(4)}).get_json()["prediction_id"]
    _, predictor = service.models.predictor("gender")
    real = predictor.predict

    def slow(inputs: Any) -> Any:
        time.sleep(1.6)  # each chunk takes longer than the 1 s lease
        return real(inputs)

    predictor.predict = slow
    try:
        worker = threading.Thread(target=service.run_one)
        worker.start()
        time.sleep(0.2)
        stolen = []
        while worker.is_alive():
            stolen.append(service.store.claim_next("another-worker", 1.0))
            time.sleep(0.2)
        worker.join()
    finally:
        predictor.predict = real
    assert [c for c in stolen if c is not None] == []
    done = service.check(pid, 0, 100)
    assert done["status"] == "SUCCEEDED" and done["attempts"] == 1 and done["results"]["total"] == 4


def _expired_job(store: Store, owner: str) -> Claim:
    pid = store.insert_prediction(kind="batch", status="QUEUED", model_name="m", model_version="v",
                                  input_spec={"records": []})
    claim = store.claim_next(owner, 30.0)
    assert claim is not None and claim.prediction_id == pid
    with store.engine.begin() as conn:
        conn.execute(predictions.update().where(predictions.c.id == pid).values(lease_until=time.time() - 1))
    return claim


def test_a_lease_renewed_after_the_claimers_read_is_not_taken_over(database_url: str) -> None:
    store = Store(database_url)
    try:
        store.migrate()
        held = _expired_job(store, "slow-but-alive")
        renewed = []

        @sa.event.listens_for(store.engine, "after_cursor_execute")
        def renew_after_the_read(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "lease_until" in statement and not renewed:
                renewed.append(store.renew(held, 30.0))  # the owner's heartbeat lands in between

        assert store.claim_next("thief", 30.0) is None
        assert renewed == [True]
        assert store.get(held.prediction_id)["lease_owner"] == held.token  # type: ignore[index]
    finally:
        store.close()


def test_two_claimers_racing_for_one_expired_job_one_wins(database_url: str) -> None:
    store = Store(database_url)
    try:
        store.migrate()
        for _ in range(10):
            _expired_job(store, "dead")
            barrier = threading.Barrier(2)
            won: list[Claim | None] = []

            def claim(name: str, barrier: threading.Barrier, won: list[Claim | None]) -> None:
                barrier.wait()
                won.append(store.claim_next(name, 30.0))

            threads = [threading.Thread(target=claim, args=(n, barrier, won)) for n in ("a", "b")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sum(c is not None for c in won) == 1
            winner = next(c for c in won if c is not None)
            assert store.finish(winner, "succeed")
    finally:
        store.close()
