"""The load balancer: the upstream the deploy generates, installed on the nginx host, checked with
`nginx -t` and reloaded, and the wait until the workers of the previous configuration finished
the requests they held (that is how a drained host is known to be idle)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from deploy.errors import DeployError
from deploy.vms.hosts import Transport

# A POST nginx already sent may go to the next server when sending it twice does no harm: pure
# functions of the request, and the portal's create and invoke, which answer a repeat of a request
# id from their record (the portal's idempotency, over the store the hosts share). nginx sends every
# try with one X-Request-Id: the client's, else its own $request_id. Everything else (cancel,
# retry, model loading) is retried only before it was sent.
RESENT_ROUTES = (r"^/(invocations|models/[^/]+/invoke|endpoints/[^/]+/invocations"
                 r"|api/providers/prediction/(create|invoke))$")


@dataclass(frozen=True)
class Server:
    """One line of the upstream: a host's live container."""

    host: str  # the inventory name, for messages
    address: str
    port: int
    weight: int = 10
    down: bool = False

    def line(self) -> str:
        flags = f" weight={self.weight} max_fails=2 fail_timeout=5s" + (" down" if self.down else "")
        return f"    server {self.address}:{self.port}{flags};  # {self.host}"


def site_conf(servers: Sequence[Server], listen: str = "80", upstream: str = "mlship") -> str:
    """The http-level site file: upstream + server. nginx requires at least one server line, so
    with nothing deployed yet the upstream holds a placeholder that is always down."""
    lines = "\n".join(s.line() for s in servers) or "    server 127.0.0.1:9 down;  # nothing deployed yet"
    proxy = f"""        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Request-Id ${upstream}_request_id;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_read_timeout 120s;
        proxy_next_upstream_tries 3;"""
    return f"""# Written by `python -m deploy vms`; the deploy rewrites it at every step of a rollout.
map $http_x_request_id ${upstream}_request_id {{
    "" $request_id;
    default $http_x_request_id;
}}
upstream {upstream} {{
{lines}
    keepalive 32;
}}
server {{
    listen {listen};
    client_max_body_size 100m;
    location ~ {RESENT_ROUTES} {{
{proxy}
        proxy_next_upstream error timeout http_502 http_503 non_idempotent;
    }}
    location / {{
{proxy}
        proxy_next_upstream error timeout http_502 http_503;
    }}
}}
"""


def nginx_conf(hosts: Sequence[str], listen: int = 80) -> str:
    """The site for ``address:port`` backends (all up, equal weight)."""
    servers = []
    for h in hosts:
        address, _, port = h.rpartition(":")
        servers.append(Server(host=h, address=address, port=int(port)))
    return site_conf(servers, str(listen))


@dataclass
class Nginx:
    """nginx on ``host`` (a transport name), whose main configuration includes ``conf_path``."""

    transport: Transport
    host: str
    conf_path: str
    pid_file: str = "/run/nginx.pid"
    test_command: str = "nginx -t -q"
    reload_command: str = "nginx -s reload"
    listen: str = "80"
    drain_seconds: float = 130.0  # longest request nginx lets run (proxy_read_timeout) + margin

    def _sh(self, command: str, what: str, stdin: str | None = None) -> str:
        result = self.transport.run(self.host, command, stdin=stdin, timeout=60)
        if not result.ok:
            raise DeployError(f"nginx on {self.host}: {what} failed: "
                              f"{(result.stderr or result.stdout).strip()[-600:]}")
        return result.stdout

    def installed(self) -> str:
        """The site file as it is installed now ('' before the first deploy)."""
        return self.transport.run(self.host, f"cat {shlex.quote(self.conf_path)} 2>/dev/null").stdout

    def workers(self) -> tuple[set[str], int]:
        """The master's current worker pids, and how many old ones are still shutting down."""
        out = self._sh(f"ps --ppid \"$(cat {shlex.quote(self.pid_file)})\" -o pid=,args=", "listing workers")
        current, old = set(), 0
        for line in out.splitlines():
            pid, _, args = line.strip().partition(" ")
            if "shutting down" in args:
                old += 1
            elif "worker process" in args:
                current.add(pid)
        return current, old

    def apply(self, servers: Sequence[Server]) -> None:
        """Install the site for ``servers``: the previous file is kept until `nginx -t` accepted the
        new one (and put back if it did not), then reload and wait until the new workers serve."""
        path = shlex.quote(self.conf_path)
        self._sh(f"mkdir -p \"$(dirname {path})\" && cat > {path}.new", "writing the site",
                 stdin=site_conf(servers, self.listen))
        swap = (f"if [ -e {path} ]; then cp -p {path} {path}.prev; fi; mv {path}.new {path}; "
                f"if {self.test_command}; then rm -f {path}.prev; "
                f"else rc=$?; if [ -e {path}.prev ]; then mv {path}.prev {path}; fi; exit $rc; fi")
        self._sh(swap, "`nginx -t` of the new upstream (the previous one stays installed)")
        before, _ = self.workers()
        self._sh(self.reload_command, "reload")
        deadline = time.monotonic() + 10
        while True:  # the master re-reads the file asynchronously after the signal
            current, _ = self.workers()
            if current and not current & before:
                return
            if time.monotonic() > deadline:
                raise DeployError(f"nginx on {self.host} did not start new workers within 10s of the reload")
            time.sleep(0.05)

    def wait_drained(self) -> float:
        """Seconds until no worker of an earlier configuration is left: every request sent under
        it (to a host now marked down) has been answered."""
        started = time.monotonic()
        while self.workers()[1]:
            if time.monotonic() - started > self.drain_seconds:
                raise DeployError(f"nginx on {self.host}: old workers still busy after "
                                  f"{self.drain_seconds:g}s")
            time.sleep(0.1)
        return time.monotonic() - started


def with_server(servers: Sequence[Server], host: str, **changes: object) -> list[Server]:
    """``servers`` with the entry of ``host`` changed (port, weight, down)."""
    return [replace(s, **changes) if s.host == host else s for s in servers]  # type: ignore[arg-type]
