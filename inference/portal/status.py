"""Prediction states and the one transition table: the store enforces it, the API reports it.

QUEUED -> RUNNING -> SUCCEEDED | FAILED, and CANCELLED from QUEUED or RUNNING; retry takes
FAILED or CANCELLED back to QUEUED; a RUNNING job whose lease expired may be taken over by
another worker. Online calls and captures are recorded already finished (SUCCEEDED or FAILED).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[Status]
    target: Status

    @property
    def source_values(self) -> list[str]:
        """The source states in the order of the Status declaration."""
        return [s.value for s in Status if s in self.sources]


TRANSITIONS: dict[str, Transition] = {
    "start": Transition(frozenset({Status.QUEUED}), Status.RUNNING),
    "take_over": Transition(frozenset({Status.RUNNING}), Status.RUNNING),  # only once the lease expired
    "succeed": Transition(frozenset({Status.RUNNING}), Status.SUCCEEDED),
    "fail": Transition(frozenset({Status.RUNNING}), Status.FAILED),
    "cancel": Transition(frozenset({Status.QUEUED, Status.RUNNING}), Status.CANCELLED),
    "retry": Transition(frozenset({Status.FAILED, Status.CANCELLED}), Status.QUEUED),
}
KINDS = ("batch", "online", "capture")


def allowed(action: str, status: str) -> bool:
    return Status(status) in TRANSITIONS[action].sources
