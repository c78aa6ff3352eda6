"""The training error tree: who has to act, and what the failure file says first.

SageMaker keeps the first 1,024 characters of /opt/ml/output/failure as the job's
FailureReason, so each error's ``headline`` is the one line a user must read.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base of every error `train` reports on purpose."""

    kind = "AlgorithmError"

    @property
    def headline(self) -> str:
        return f"{self.kind}: {self}"


class UserError(TrainingError):
    """The job's inputs are wrong: a hyperparameter, a channel, the data. The user fixes it."""

    kind = "ClientError"


class PlatformError(TrainingError):
    """A piece of the /opt/ml contract is missing or unreadable (the platform's side)."""

    kind = "PlatformError"


class AlgorithmError(TrainingError):
    """Our code failed on valid input: a bug to report."""

    kind = "AlgorithmError"
