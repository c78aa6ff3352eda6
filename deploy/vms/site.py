"""Deploy to VMs behind nginx: each host runs the image with podman, the new release beside the old
one, and nginx is switched host by host with no failed request; any failure rolls every host back.

    python -m deploy vms --image REG/mlship:TAG --inventory vms.json --ssh-config ~/.ssh/mlship \
        --model-tar model.tar.gz --database-url postgresql://... \
        --nginx-host lb1 --nginx-conf /etc/nginx/conf.d/mlship.conf [--canary-weight 1 --canary-seconds 120]

See deploy/vms/rollout.py for the steps; README "Deploying to VMs" for the inventory and credentials.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.tarball import check as tarball_check
from deploy.vms.checks import Watch
from deploy.vms.containers import Podman, Release
from deploy.vms.hosts import Host, Transport, load_inventory, parse_hosts, transport_for
from deploy.vms.nginx import Nginx
from deploy.vms.rollout import Options, Rollout


def deploy_vms(*, release: Release, hosts: Sequence[Host], transport: Transport, nginx: Nginx,
               options: Options | None = None, model_tar: bytes | None = None) -> dict[str, Any]:
    """Roll ``release`` out over ``hosts``; raises DeployError with every host on the previous
    release when it cannot. ``model_tar`` (a model.tar.gz) is unpacked on every host first, into
    the release's ``model_dir`` (a no-op where that tarball is already there). After a rollout that
    succeeded, the model folders the deploy unpacked under each host's ``{state_dir}/models`` that
    no container there mounts any more (neither colour: the stopped one is the rollback) are pruned."""
    podman = Podman(transport)
    if model_tar is not None:
        for host in hosts:  # before any host changes: a copy that fails leaves all as they were
            podman.upload_model(host, model_tar, release.model_dir_on(host))
    out = Rollout(release, hosts, podman, nginx, options).run()
    pruned: dict[str, Any] = {}
    for host in hosts:
        try:
            keep = {release.model_dir_on(host)}
            pruned[host.name] = podman.prune_models(host, f"{host.state_dir}/models", keep)
        except DeployError as exc:  # the release is out; an old folder left behind is no failure
            pruned[host.name] = f"not pruned: {exc}"
    out["pruned"] = pruned
    return out


def _env_pairs(items: Sequence[str], files: Sequence[Path]) -> dict[str, str]:
    env: dict[str, str] = {}
    lines = [line for f in files for line in f.read_text().splitlines()]
    for item in [*lines, *items]:
        if not item.strip() or item.lstrip().startswith("#"):
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DeployError(f"environment entry {key!r} is not KEY=VALUE; nothing was changed")
        env[key.strip()] = value
    return env


def _ports(text: str) -> tuple[int, int]:
    blue, _, green = text.partition(",")
    return int(blue), int(green)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("the release")
    what.add_argument("--image", required=True, help="image reference the hosts pull and run")
    what.add_argument("--release", help="label GET /release reports (default: the image tag)")
    what.add_argument("--model-tar", type=Path, help="model.tar.gz copied to and unpacked on every host")
    what.add_argument("--model-dir", help="model directory on every host (with --model-tar: where it is "
                      "unpacked, default {state_dir}/models/SHA256); {state_dir}: the host's")
    what.add_argument("--model-repository", help="MLapp model repository folder on every host")
    what.add_argument("--database-url", help="the portal's shared PostgreSQL (MLAPP_DATABASE_URL)")
    what.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                      help="container environment; repeatable")
    what.add_argument("--env-file", type=Path, action="append", default=[],
                      help="KEY=VALUE lines (e.g. a Jenkins secret file); repeatable")
    what.add_argument("--volume", action="append", default=[], metavar="HOST:CONTAINER[:ro]")
    what.add_argument("--workers", type=int, help="gunicorn workers per container")
    what.add_argument("--no-pull", action="store_true", help="the image is already on the hosts")
    where = parser.add_argument_group("the hosts")
    where.add_argument("--hosts", help="NAME[=ADDRESS][:PORT],... (ssh alias = HTTP address by default)")
    where.add_argument("--inventory", type=Path, help="JSON: [{name, address, ports, prefix, state_dir}]")
    where.add_argument("--ports", type=_ports, default=(8081, 8082), help="blue,green host ports for --hosts")
    where.add_argument("--transport", choices=["ssh", "local"], default="ssh")
    where.add_argument("--ssh-config", type=Path, help="ssh -F file: host aliases, keys, known hosts")
    lb = parser.add_argument_group("the load balancer")
    lb.add_argument("--nginx-conf", required=True, help="site file on the nginx host, included by nginx.conf")
    lb.add_argument("--nginx-host", default="local", help="ssh alias of the nginx host, or 'local'")
    lb.add_argument("--nginx-pid", default="/run/nginx.pid")
    lb.add_argument("--nginx-test", default="nginx -t -q")
    lb.add_argument("--nginx-reload", default="nginx -s reload")
    lb.add_argument("--listen", default="80", help="nginx listen directive of the site")
    how = parser.add_argument_group("the rollout")
    how.add_argument("--ready-seconds", type=float, default=120)
    how.add_argument("--watch-seconds", type=float, default=10, help="error-rate watch after each switch")
    how.add_argument("--max-error-rate", type=float, default=0.01)
    how.add_argument("--canary-weight", type=int, help="first host's nginx weight (others: 10)")
    how.add_argument("--canary-seconds", type=float, default=60)
    how.add_argument("--no-portal-smoke", action="store_true", help="no portal (MLAPP_ENABLED=false)")
    how.add_argument("--portal-key-env", help="environment variable holding a portal API key for the smoke")


def _hosts(args: argparse.Namespace) -> list[Host]:
    if bool(args.hosts) == bool(args.inventory):
        raise DeployError("give --hosts or --inventory (one of them); nothing was changed")
    if args.inventory:
        return load_inventory(args.inventory)
    return parse_hosts(args.hosts, args.ports)


def run(args: argparse.Namespace) -> dict[str, Any]:
    hosts = _hosts(args)
    label = args.release or args.image.rpartition(":")[2] or args.image
    env = _env_pairs(args.env, args.env_file)
    if args.database_url:
        env["MLAPP_DATABASE_URL"] = args.database_url
    tarball = None
    if args.model_tar is not None:
        if not args.model_tar.is_file():
            raise DeployError(f"--model-tar {args.model_tar} does not exist; nothing was changed")
        tarball_check(args.model_tar)  # the hosts' tar must not be handed a member that escapes
        tarball = args.model_tar.read_bytes()
        model_dir = args.model_dir or f"{{state_dir}}/models/{hashlib.sha256(tarball).hexdigest()[:16]}"
    elif args.model_dir:
        model_dir = args.model_dir
    else:
        raise DeployError("give --model-tar or --model-dir; nothing was changed")
    headers = {}
    if args.portal_key_env:
        key = os.environ.get(args.portal_key_env)
        if not key:
            raise DeployError(f"${args.portal_key_env} is empty; nothing was changed")
        headers["X-Api-Key"] = key
    release = Release(label=label, image=args.image, model_dir=model_dir,
                      model_repository=args.model_repository, environment=env, volumes=tuple(args.volume),
                      workers=args.workers, pull=not args.no_pull)
    transport = transport_for(args.transport, args.ssh_config)
    nginx_transport = transport_for("local" if args.nginx_host == "local" else "ssh", args.ssh_config)
    nginx = Nginx(nginx_transport, args.nginx_host, args.nginx_conf, pid_file=args.nginx_pid,
                  test_command=args.nginx_test, reload_command=args.nginx_reload, listen=args.listen)
    options = Options(ready_seconds=args.ready_seconds,
                      watch=Watch(args.watch_seconds, args.max_error_rate),
                      canary_weight=args.canary_weight, canary_seconds=args.canary_seconds,
                      portal_smoke=not args.no_portal_smoke, portal_headers=headers)
    return deploy_vms(release=release, hosts=hosts, transport=transport, nginx=nginx, options=options,
                      model_tar=tarball)
