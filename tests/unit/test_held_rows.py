"""Predicted rows held over a pass of the worker's loop (inference.metrics.hold_rows): counted at
release, the same total as counted one by one; another thread's rows are not held."""

from __future__ import annotations

import threading

from prometheus_client import REGISTRY

from inference import metrics


def _count(door: str) -> float:
    return REGISTRY.get_sample_value("mlship_predicted_rows_total",
                                     {"door": door, "model": "m", "model_version": "v1"}) or 0.0


def test_held_rows_are_counted_at_release() -> None:
    before = _count("held-test")
    assert metrics.hold_rows()
    try:
        assert not metrics.hold_rows()  # held already: the outer hold releases them
        for rows in (1, 3, 1000):
            metrics.rows_predicted("held-test", "m", "v1", rows)
        assert _count("held-test") == before
    finally:
        metrics.release_rows()
    assert _count("held-test") == before + 1004
    metrics.rows_predicted("held-test", "m", "v1", 2)  # not held: counted at once
    assert _count("held-test") == before + 1006


def test_another_threads_rows_are_not_held() -> None:
    before = _count("other-thread")
    assert metrics.hold_rows()
    try:
        other = threading.Thread(target=metrics.rows_predicted, args=("other-thread", "m", "v1", 7))
        other.start()
        other.join()
        assert _count("other-thread") == before + 7
    finally:
        metrics.release_rows()
