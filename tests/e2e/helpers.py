"""Real processes for end-to-end tests: free ports, waiting for /ping, clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def wait_ready(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Seconds until GET url answered 200; fails if the process died first."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before it was ready")
        try:
            if http("GET", url, timeout=2)[0] == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def start_serve(base: Path, port: int, log: Path, extra_env: Mapping[str, str] | None = None,
                workers: int = 2) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SM_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
           "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **(extra_env or {})}
    return popen_logged([str(BIN / "serve")], env, log)


@contextmanager
def serving(base: Path, folder: Path, workers: int = 1) -> Iterator[int]:
    """A ready `serve` of the model under ``base`` (its log in ``folder``), stopped after; its port."""
    port = free_port()
    proc = start_serve(base, port, folder / "serve.log", workers=workers)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", proc=proc)
        yield port
    finally:
        stop(proc)


def popen_logged(cmd: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start cmd with stdout+stderr to ``log``; the parent's copy of the file is closed."""
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return int(proc.returncode)


NGINX = "/usr/sbin/nginx"


def start_nginx(workdir: Path, listen: int, upstreams: list[int], extra_locations: str = "",
                max_body: str = "100m") -> subprocess.Popen[bytes]:
    """A real nginx in the foreground balancing over local upstream ports."""
    workdir.mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstreams)
    # As root, nginx's workers drop to nobody, who cannot write request bodies into pytest's
    # private temporary directories; keep them as the user running the tests.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log {workdir}/access.log;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
  client_max_body_size {max_body};
  upstream backends {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{listen};
    proxy_next_upstream error timeout http_502 http_503;
    proxy_read_timeout 120s;
{extra_locations}
    location / {{
      proxy_pass http://backends;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
  }}
}}
"""
    (workdir / "nginx.conf").write_text(conf)
    with (workdir / "stdout.log").open("wb") as out:
        proc = subprocess.Popen([NGINX, "-c", str(workdir / "nginx.conf")], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", listen)) == 0:
                return proc
        if proc.poll() is not None:
            raise RuntimeError((workdir / "error.log").read_text())
        time.sleep(0.05)
    raise TimeoutError("nginx did not start")
