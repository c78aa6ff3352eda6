"""Portal predictions by status for GET /metrics, read from the shared store at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inference.portal.status import Status

log = logging.getLogger("inference.metrics")


class JobsCollector(Collector):
    """Every VM reads the same store, so every VM reports the same counts."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("mlship_portal_predictions", "Portal predictions in the store, by status.",
                                   labels=["status"])
        try:
            counts = self.counts()
        except Exception as exc:  # a store outage must not break the scrape of everything else
            log.warning("portal store unavailable for /metrics: %s", exc)
            return
        for status in Status:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family
