"""Shared benchmark plumbing: wrk runs, server processes, medians, result files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
DATA = Path(os.environ.get("MLSHIP_DATA", ROOT.parent / "shared" / "data"))
POST_LUA = """
local f = io.open(os.getenv("WRK_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CTYPE")
"""
REPORT_LUA = """
wrk.headers["Accept"] = os.getenv("WRK_ACCEPT") or "*/*"
for line in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^\\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"p50\\": %f, \\"p99\\": %f, \\"requests\\": %d, "
    .. "\\"errors\\": %d, \\"non2xx\\": %d, \\"seconds\\": %f}\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration / 1e6))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server on {port} not ready")


def post(port: int, body: bytes, ctype: str, accept: str = "*/*") -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, method="POST",
                                 headers={"Content-Type": ctype, "Accept": accept})
    with urllib.request.urlopen(req, timeout=60) as r:
        return bytes(r.read())


def start(cmd: list[str], env: dict[str, str | None], log: Path) -> subprocess.Popen[bytes]:
    """A server in its own session; ``env`` values of None remove a variable (its default holds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    merged = {**os.environ, **env}
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env={k: v for k, v in merged.items() if v is not None}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """Child processes of every thread of ``pid`` (a JVM starts processes from threads other than
    its main one, which /proc/PID/task/PID/children alone would miss)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (gunicorn's master and workers, a Spark
    executor and its Python workers)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (FileNotFoundError, ProcessLookupError):
            continue
        todo.extend(children(current))
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds a server has used so far: the process, its live children and those it reaped
    (gunicorn's master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry.name)], stats[int(entry.name)] = int(fields[1]), fields
    tree, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total = sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats)
    if pid in stats:
        total += int(stats[pid][13]) + int(stats[pid][14])  # reaped children
    return total / tick


def wrk(port: int, body: Path | None, ctype: str, connections: int, seconds: int, accept: str = "*/*",
        path: str = "/invocations", server_pid: int | None = None,
        headers: dict[str, str] | None = None) -> dict[str, float]:
    """One closed-loop wrk run: POST ``body`` (or GET when None), with ``headers`` besides; with
    ``server_pid`` also the server's CPU milliseconds per request."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk; ./run setup does it)")
    script = RESULTS / ("post.lua" if body is not None else "get.lua")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text((POST_LUA if body is not None else "") + REPORT_LUA)
    env = {**os.environ, "WRK_BODY": str(body), "WRK_CTYPE": ctype, "WRK_ACCEPT": accept,
           "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in (headers or {}).items())}
    cpu_before = tree_cpu(server_pid) if server_pid else 0.0
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
                          f"http://127.0.0.1:{port}{path}"], env=env, capture_output=True,
                         text=True, check=True).stdout
    match = re.search(r"^JSON (.*)$", out, re.M)
    assert match, out
    got = json.loads(match.group(1))
    got["rps"] = got["requests"] / got["seconds"]
    if server_pid:
        got["cpu_ms"] = (tree_cpu(server_pid) - cpu_before) * 1000 / max(got["requests"], 1)
    if got["errors"] or got["non2xx"]:
        raise RuntimeError(f"wrk saw errors: {got}")
    return dict(got)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in ("p50", "p99", "rps", "cpu_ms") if all(k in r for r in runs)]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def report(name: str, results: dict[str, Any], targets: dict[str, bool]) -> int:
    """Print each target's verdict, save the results file; the exit code of a bench suite."""
    results["targets"] = targets
    for k, v in targets.items():
        print(f"target {k}: {'MET' if v else 'MISSED'}")
    print(f"results: {save(name, results)}")
    return 0


def parser(doc: str, reps: int = 3) -> Any:
    """The options every suite takes: --seconds per point, --reps per point, --workdir."""
    import argparse

    found = argparse.ArgumentParser(description=doc.splitlines()[0])
    found.add_argument("--seconds", type=int, default=10)
    found.add_argument("--reps", type=int, default=reps)
    found.add_argument("--workdir", type=Path, default=RESULTS / "work")
    return found
