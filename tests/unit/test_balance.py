"""inference.fast.balance: which worker takes a new connection, decided from the counts they share."""

from __future__ import annotations

import os

from inference.fast.balance import DEFER_SECONDS, Balancer, Shares


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_holding_more_leaves_the_connection_to_one_holding_fewer() -> None:
    shares = Shares(4)
    a, b = Balancer(shares, 0, _Clock()), Balancer(shares, 1, _Clock())
    a.publish(0)
    b.publish(0)
    assert not a.should_leave(0) and not b.should_leave(0)  # even: either takes it
    a.accepted(1)
    assert a.should_leave(1) and not b.should_leave(0)
    b.accepted(1)
    assert not a.should_leave(1) and not b.should_leave(1)
    assert shares.counts() == [1, 1, -1, -1]


def test_vacant_slots_and_a_dead_worker_are_not_waited_for() -> None:
    shares = Shares(4)  # slots 1-3 never held a worker
    only = Balancer(shares, 0, _Clock())
    only.publish(5)
    assert not only.should_leave(5)
    other = Balancer(shares, 2, _Clock())
    other.publish(0)
    assert only.should_leave(5)
    shares.vacate(2)  # the arbiter, when that worker exits
    assert not only.should_leave(5)


def test_a_connection_waits_for_a_busy_worker_no_longer_than_the_deferral() -> None:
    shares, clock = Shares(2), _Clock()
    busy = Balancer(shares, 1, clock)
    busy.publish(0)  # holds none but is not accepting (a long request, or stuck)
    loaded = Balancer(shares, 0, clock)
    loaded.publish(3)
    assert loaded.should_leave(3)
    clock.now += DEFER_SECONDS / 2
    assert loaded.should_leave(3)
    clock.now += DEFER_SECONDS
    assert not loaded.should_leave(3)  # waited long enough: this worker takes it
    loaded.accepted(4)
    assert loaded.should_leave(4)  # the next connection starts a new wait


def test_the_counts_are_shared_with_a_forked_worker() -> None:
    shares = Shares(2)
    pid = os.fork()
    if pid == 0:  # the child publishes, as a worker does after the arbiter forks it
        Balancer(shares, 1).publish(7)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and shares.counts() == [-1, 7]
    assert shares.free_slot({1}) == 0 and shares.free_slot({0, 1}) is None
