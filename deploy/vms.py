"""Deploy to VMs behind nginx: write the upstream that balances over the hosts, then restart one host
at a time with the `--run` command and wait for its /ping before touching the next; all hosts share
the portal store given by `--database-url` (PostgreSQL)."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy.errors import DeployError


def nginx_conf(hosts: Sequence[str], listen: int = 80) -> str:
    """The load balancer in front of the VMs: /ping-failing or dead hosts are skipped."""
    servers = "\n".join(f"    server {h} max_fails=2 fail_timeout=10s;" for h in hosts)
    return f"""# Written by `python -m deploy vms`: MLapp / SageMaker-style serve on several VMs.
upstream mlship {{
{servers}
    keepalive 32;
}}
server {{
    listen {listen};
    client_max_body_size 100m;
    location / {{
        proxy_pass http://mlship;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Request-Id $request_id;
        proxy_next_upstream error timeout http_502 http_503;
        proxy_read_timeout 120s;
    }}
}}
"""


def _ping(host: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}/ping", timeout=3) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def deploy_vms(*, image: str, hosts: Sequence[str], nginx_path: Path, run: str,
               database_url: str | None = None, ready_seconds: float = 120) -> dict[str, Any]:
    nginx_path.parent.mkdir(parents=True, exist_ok=True)
    nginx_path.write_text(nginx_conf(hosts))
    done = []
    for host in hosts:  # one at a time: the others keep serving behind nginx
        command = run.format(host=host.split(":")[0], hostport=host, image=shlex.quote(image),
                             database_url=shlex.quote(database_url or ""))
        print(f"deploy: {host}: {command}", flush=True)
        result = subprocess.run(command, shell=True, capture_output=True, text=True)
        if result.returncode != 0:
            raise DeployError(f"{host}: restart command failed ({result.returncode}): "
                               f"{result.stderr[-500:]}")
        if not _ping(host, ready_seconds):
            raise DeployError(f"{host}: /ping not 200 within {ready_seconds:g}s after the restart; "
                               "stopping the rollout so the remaining hosts keep the old version")
        done.append(host)
    return {"target": "vms", "image": image, "hosts": done, "nginx_conf": str(nginx_path)}



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True)
    parser.add_argument("--hosts", required=True, help="comma-separated host:port list")
    parser.add_argument("--nginx-conf", type=Path, required=True)
    parser.add_argument("--run",
                        default="ssh {host} 'podman pull {image} && systemctl --user restart mlship'",
                        help="restart command per host; {host}, {hostport}, {image}, {database_url}")
    parser.add_argument("--database-url", help="shared PostgreSQL of the portal")


def run(args: argparse.Namespace) -> dict[str, Any]:
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    return deploy_vms(image=args.image, hosts=hosts, nginx_path=args.nginx_conf, run=args.run,
                      database_url=args.database_url)
