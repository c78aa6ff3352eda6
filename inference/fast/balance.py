"""Kept-alive connections spread evenly over the workers.

Every worker listens on the same socket and the kernel wakes them all for a new connection;
whichever calls accept first gets it. With short connections that evens out, but a client that
keeps its connections open (SageMaker's front end, a load balancer, wrk) opens a few at once and
holds them: measured here, 8 connections split 8/0 or 7/1 in about one run in three, and then one
core answered everything while the other idled (half the throughput, twice the latency).

So each worker publishes how many connections it holds in a small table the workers share (an
anonymous shared mapping the arbiter makes before it forks them), and a worker holding more than
another leaves a new connection to that one. It waits for it at most ``DEFER_SECONDS``: a worker
that is busy with a long request, or stuck, does not hold up a connection for longer.
"""

from __future__ import annotations

import mmap
import struct
import time

DEFER_SECONDS = 0.005
_SLOT = struct.Struct("=q")  # one signed 64-bit count per worker slot


class Shares:
    """Open connections per worker slot, in memory every forked worker shares."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._memory = mmap.mmap(-1, _SLOT.size * slots)  # anonymous and MAP_SHARED: kept over fork
        for slot in range(slots):
            self.vacate(slot)

    def publish(self, slot: int, connections: int) -> None:
        _SLOT.pack_into(self._memory, slot * _SLOT.size, connections)

    def vacate(self, slot: int) -> None:
        """No worker in ``slot`` (-1): the others do not wait for it."""
        _SLOT.pack_into(self._memory, slot * _SLOT.size, -1)

    def counts(self) -> list[int]:
        return [c for (c,) in _SLOT.iter_unpack(self._memory)]

    def free_slot(self, taken: set[int]) -> int | None:
        return next((s for s in range(self.slots) if s not in taken), None)


class Balancer:
    """One worker's side: publish its count, and say whether to leave a connection to another."""

    def __init__(self, shares: Shares, slot: int, clock: object = time.monotonic) -> None:
        self.shares = shares
        self.slot = slot
        self._clock = clock
        self._deferring_since: float | None = None
        self._published = -1

    def publish(self, connections: int) -> None:
        if connections != self._published:
            self.shares.publish(self.slot, connections)
            self._published = connections

    def should_leave(self, connections: int) -> bool:
        """True while another worker holds fewer connections than ``connections`` and the one
        waiting has not waited ``DEFER_SECONDS`` yet."""
        counts = self.shares.counts()
        fewer = any(0 <= c < connections for s, c in enumerate(counts) if s != self.slot)
        now = self._clock()  # type: ignore[operator]
        if not fewer:
            self._deferring_since = None
            return False
        if self._deferring_since is None:
            self._deferring_since = now
        if now - self._deferring_since >= DEFER_SECONDS:
            self._deferring_since = None
            return False
        return True

    def accepted(self, connections: int) -> None:
        self._deferring_since = None
        self.publish(connections)
