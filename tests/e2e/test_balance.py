"""Kept-alive connections on a real `serve` with 2 workers end up spread evenly over them
(inference/fast/balance.py): each worker's established sockets are counted from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from container.paths import MLPaths
from tests.conftest import speed_layer_on
from tests.e2e.helpers import free_port, start_serve, stop, wait_ready

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not speed_layer_on(), reason="the speed layer's own parts: MLSHIP_FAST is off")]


def _established(port: int) -> set[int]:
    """Socket inodes of the connections accepted on ``port`` (server side, state ESTABLISHED)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    return inodes


def _held_by(pid: int, inodes: set[int]) -> int:
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            held += 1
    return held


def test_connections_opened_one_after_another_alternate_between_the_workers(
        gender_model: MLPaths, tmp_path: Path) -> None:
    port = free_port()
    proc = start_serve(gender_model.base, port, tmp_path / "serve.log", workers=2)
    clients: list[socket.socket] = []
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", proc=proc)
        time.sleep(0.5)  # wait_ready's own connections are closed and counted down
        workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                  text=True, check=True).stdout.split()]
        assert len(workers) == 2
        for _ in range(16):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # accepted and answered: it is held
            clients.append(sock)
        inodes = _established(port)
        held = sorted(_held_by(pid, inodes) for pid in workers)
        # Without balancing, whichever worker wakes first takes each one: 16 split 8/8 rarely.
        assert sum(held) == 16 and held[1] - held[0] <= 1, held
    finally:
        for sock in clients:
            sock.close()
        stop(proc)
