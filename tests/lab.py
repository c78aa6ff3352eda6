"""A VM lab on one machine, for the rollout's tests and benchmark: a real sshd on loopback with one
ssh Host alias per "VM" (each VM = the podman containers of the image, with ports of its own), a
real nginx in front whose site file the deploy installs and reloads, and a load generator.

All VMs share this machine's podman, so a VM's commands reach podman through sshd like a real VM's
would, and its containers use host networking on its own ports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.vms.containers import COLORS, Container
from deploy.vms.hosts import SSH, Host
from deploy.vms.nginx import Nginx, site_conf

SSHD = "/usr/sbin/sshd"
NGINX = "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Lab:
    """``with Lab(3, prefix="wt12-lab") as lab:`` VMs vm1..vmN behind ``lab.nginx``."""

    def __init__(self, vms: int = 3, prefix: str = "mlship-lab") -> None:
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        # short: ssh's ControlPath must stay under 108 characters
        self.dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        self.dir.chmod(0o755)  # the containers' mlship user reads models and writes job data here
        self.hosts = [Host(name=f"vm{i}", address="127.0.0.1", ports=(free_port(), free_port()),
                           prefix=f"{self.prefix}-vm{i}", state_dir=str(self.dir / f"vm{i}"))
                      for i in range(1, vms + 1)]
        self.ssh_config = self.dir / "ssh_config"
        self.lb_port = free_port()
        self._sshd: subprocess.Popen[bytes] | None = None
        self._nginx: subprocess.Popen[bytes] | None = None

    # --- sshd --------------------------------------------------------------------------------------
    def _keys(self) -> tuple[Path, Path]:
        host_key, user_key = self.dir / "host_key", self.dir / "id_ed25519"
        for key in (host_key, user_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (self.dir / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
        return host_key, user_key

    def start_sshd(self) -> None:
        host_key, user_key = self._keys()
        port = free_port()
        conf = self.dir / "sshd_config"
        conf.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {self.dir}/sshd.pid
AuthorizedKeysFile {self.dir}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
MaxStartups 100
MaxSessions 100
LogLevel ERROR
""")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        log = self.dir / "sshd.log"
        with log.open("wb") as out:
            self._sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(port, self._sshd, "sshd", log)
        known = self.dir / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text().split(' ')[0]} "
                         f"{Path(f'{host_key}.pub').read_text().split(' ')[1]}\n")
        user = os.environ.get("USER") or "root"
        blocks = [f"""Host {h.name}
  HostName 127.0.0.1
  Port {port}
  User {user}
  IdentityFile {user_key}
  IdentitiesOnly yes
  UserKnownHostsFile {known}
  StrictHostKeyChecking yes
  ControlMaster auto
  ControlPath {self.dir}/cm-%C
  ControlPersist 60
""" for h in self.hosts]
        self.ssh_config.write_text("\n".join(blocks))

    # --- nginx -----------------------------------------------------------------------------------
    @property
    def site(self) -> Path:
        return self.dir / "nginx" / "mlship.conf"

    @property
    def nginx_main(self) -> Path:
        return self.dir / "nginx" / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return self.dir / "nginx" / "access.log"

    def start_nginx(self) -> None:
        work = self.dir / "nginx"
        work.mkdir(exist_ok=True)
        self.site.write_text(site_conf([], f"127.0.0.1:{self.lb_port}"))
        # As root, nginx's workers drop to nobody, who cannot write request bodies into a 0700 folder.
        user = "user root;" if os.geteuid() == 0 else ""
        self.nginx_main.write_text(f"""{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format upstream '$status $upstream_addr $upstream_status $request_method $uri $request_time';
  access_log {self.access_log} upstream;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  include {self.site};
}}
""")
        log = work / "stdout.log"
        with log.open("wb") as out:
            self._nginx = subprocess.Popen([NGINX, "-c", str(self.nginx_main)], stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.lb_port, self._nginx, "nginx", log)

    def nginx(self, drain_seconds: float = 60) -> Nginx:
        """The deploy's handle on this nginx (a local shell: the agent is the nginx host here)."""
        from deploy.vms.hosts import LocalShell

        main = str(self.nginx_main)
        return Nginx(LocalShell(), "local", str(self.site), pid_file=str(self.dir / "nginx" / "nginx.pid"),
                     test_command=f"{NGINX} -t -q -c {main}", reload_command=f"{NGINX} -s reload -c {main}",
                     listen=f"127.0.0.1:{self.lb_port}", drain_seconds=drain_seconds)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def transport(self) -> SSH:
        return SSH(self.ssh_config)

    # --- lifetime ----------------------------------------------------------------------------------
    def containers(self) -> list[Container]:
        return [Container(h, c) for h in self.hosts for c in COLORS]

    def __enter__(self) -> Lab:
        try:
            self.start_sshd()
            self.start_nginx()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        names = [c.name for c in self.containers()]
        subprocess.run(["podman", "rm", "--force", "--ignore", "-t", "5", *names], capture_output=True)
        if self.ssh_config.exists():
            for h in self.hosts:  # the ControlMaster processes ssh left behind
                subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", h.name], capture_output=True)
        _stop(self._nginx)
        _stop(self._sshd)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- load through nginx ----------------------------------------------------------------------------
@dataclass
class Sample:
    t: float  # seconds since the load started
    seconds: float
    status: int  # 0: no HTTP answer at all
    path: str


def _dropped(sock: socket.socket) -> bool:
    """An idle keep-alive connection the server closed: readable (EOF) before we sent anything."""
    import select

    return bool(select.select([sock], [], [], 0)[0])


@dataclass
class Load:
    """``threads`` clients, each ``rate`` requests/s, against ``url`` (a connection per request);
    ``requests`` yields (path, body) in turn."""

    url: str
    requests: Callable[[int], tuple[str, bytes]]
    threads: int = 4
    rate: float = 15.0
    # Off by default: a reload closes idle keep-alive client connections, and a request sent at that
    # instant fails in the client (seen once in ~4,000); clients retry those, this one counts them.
    keepalive: bool = False
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.started = 0.0

    def _client(self, index: int) -> None:
        import http.client
        from urllib.parse import urlsplit

        where = urlsplit(self.url)
        conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=30)
        n, next_at = index, time.monotonic()
        while not self._stop.is_set():
            path, body = self.requests(n)
            n += self.threads
            if not self.keepalive or (conn.sock is not None and _dropped(conn.sock)):
                conn.close()  # as urllib3 does: nginx closed this idle connection (a reload)
            begin = time.monotonic()
            status = 0
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                conn.close()
            end = time.monotonic()
            with self._lock:
                self.samples.append(Sample(begin - self.started, end - begin, status, path))
            next_at += 1.0 / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        conn.close()

    def start(self) -> Load:
        self.started = time.monotonic()
        for i in range(self.threads):
            thread = threading.Thread(target=self._client, args=(i,), daemon=True, name=f"load-{i}")
            thread.start()
            self._threads.append(thread)
        return self

    def now(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(40)

    def window(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.t < end]


def summary(samples: Sequence[Sample]) -> dict[str, float]:
    """Requests, failures (anything but 200), rate and latency percentiles of ``samples``."""
    if not samples:
        return {"requests": 0, "failed": 0, "rate": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}
    latencies = sorted(s.seconds * 1000 for s in samples)
    span = max(s.t for s in samples) - min(s.t for s in samples)
    return {"requests": len(samples), "failed": sum(1 for s in samples if s.status != 200),
            "rate": round(len(samples) / span, 1) if span > 0 else 0.0,
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2)}


@contextlib.contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    """A PostgreSQL schema of its own (the URL selects it through search_path), dropped afterwards."""
    import psycopg

    schema = f"lab_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{base_url}?options=-csearch_path%3D{schema}"
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
