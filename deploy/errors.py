"""The one failure a deploy reports: what failed, and what is serving now."""

from __future__ import annotations


class DeployError(RuntimeError):
    """A deploy that did not end on the new release; the message says why and what still serves."""
