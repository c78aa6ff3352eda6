"""The rolling deploy over VMs, one host at a time, each replaced beside itself:

drain it in nginx -> wait for its in-flight requests -> start the new colour beside the old one ->
/ping -> GET /release -> smoke (/invocations and a portal invoke, directly) -> switch nginx to the
new port and put the host back (a canary first at a reduced weight, for a baking period) -> watch
its 5xx rate -> wait until nginx holds no request for the old port -> stop the old container.

Any failure rolls that host back, then every host already moved (newest first), and raises
DeployError naming the reason and the release every host serves afterwards.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deploy.errors import DeployError
from deploy.vms import checks
from deploy.vms.checks import CheckFailed, Watch
from deploy.vms.containers import COLORS, Container, Podman, Release
from deploy.vms.hosts import Host
from deploy.vms.nginx import Nginx, Server, with_server

WEIGHT = 10  # the weight of a host in service; a canary gets less


@dataclass(frozen=True)
class Options:
    ready_seconds: float = 120.0
    watch: Watch = field(default_factory=Watch)
    canary_weight: int | None = None  # e.g. 1: the first host takes ~1/(1 + 10 (n-1)) of traffic
    canary_seconds: float = 60.0
    portal_smoke: bool = True
    portal_headers: dict[str, str] = field(default_factory=dict)
    smoke_records: int = 5


@dataclass
class HostState:
    host: Host
    live: Container | None  # what served before the rollout
    previous: str | None  # its release label
    new: Container | None = None
    moved: bool = False


def _stderr(message: str) -> None:
    print(f"deploy: {message}", file=sys.stderr, flush=True)


class Rollout:
    def __init__(self, release: Release, hosts: Sequence[Host], podman: Podman, nginx: Nginx,
                 options: Options | None = None, log: Callable[[str], None] = _stderr) -> None:
        if not hosts:
            raise DeployError("no hosts to deploy to; nothing was changed")
        self.release, self.hosts, self.podman, self.nginx = release, list(hosts), podman, nginx
        self.options = options or Options()
        self._log = log
        self.started = time.monotonic()
        self.events: list[dict[str, Any]] = []
        self.servers: list[Server] = []

    def log(self, host: str, step: str) -> None:
        at = round(time.monotonic() - self.started, 2)
        self.events.append({"t": at, "host": host, "step": step})
        self._log(f"{host}: {step} ({at:.1f}s)")

    # --- before anything changes ---------------------------------------------------------------
    def survey(self) -> list[HostState]:
        """What each host serves now; a host whose live container does not answer stops the deploy
        before anything changed (fix or remove it first)."""
        installed = self.nginx.installed()
        states = []
        for host in self.hosts:
            running = [c for c, up in self.podman.running(host).items() if up]
            boxes = [Container(host, c) for c in running]
            if len(boxes) == 2:  # an interrupted deploy: the live one is the one nginx points at
                boxes = [b for b in boxes if f"server {host.address}:{b.port} " in installed] or boxes[:1]
            live = boxes[0] if boxes else None
            previous = None
            if live is not None:
                try:
                    previous = str(checks.release(live.url)["release"])
                except CheckFailed as exc:
                    raise DeployError(f"{host.name}: {live.name} runs but {exc}; nothing was changed, "
                                      "every host serves what it served before") from None
            states.append(HostState(host, live, previous))
        return states

    # --- the rollout ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        states = self.survey()
        self.servers = [Server(s.host.name, s.host.address, s.live.port, WEIGHT)
                        for s in states if s.live is not None]
        self.nginx.apply(self.servers)  # the installed upstream is the deploy's from here on
        self.log("*", "surveyed: " + ", ".join(f"{s.host.name}={s.previous or 'nothing'}" for s in states))
        for index, state in enumerate(states):
            try:
                self._replace(state, canary=index == 0 and self.options.canary_weight is not None
                              and len(states) > 1)
            except (CheckFailed, DeployError) as exc:
                reason = f"{state.host.name}: {exc}"
                self.log(state.host.name, f"FAILED: {exc}")
                raise DeployError(f"{reason}; {self._roll_back(states)}") from None
        for state in states:  # what each host serves, asked of the host itself
            assert state.new is not None
            served = checks.release(state.new.url)
            if served.get("release") != self.release.label:
                raise DeployError(f"{state.host.name} reports release {served.get('release')!r} after the "
                                  f"rollout, not {self.release.label!r}")
        seconds = round(time.monotonic() - self.started, 2)
        self.log("*", f"every host serves {self.release.label}")
        return {"target": "vms", "release": self.release.label, "image": self.release.image,
                "hosts": [{"host": s.host.name, "container": s.new.name, "port": s.new.port,
                           "previous": s.previous} for s in states if s.new is not None],
                "seconds": seconds, "events": self.events}

    def _apply(self) -> None:
        self.nginx.apply(self.servers)

    def _others_up(self, host: Host) -> bool:
        return any(s.host != host.name and not s.down for s in self.servers)

    def _drain(self, state: HostState) -> None:
        """Take the host out of nginx and wait until it holds no request sent through nginx."""
        if state.live is None or not self._others_up(state.host):
            return  # nothing to drain, or no one to take its traffic: the switch happens in one reload
        self.servers = with_server(self.servers, state.host.name, down=True)
        self._apply()
        waited = self.nginx.wait_drained()
        self.log(state.host.name, f"drained in {waited:.2f}s")

    def _records(self, host: Host) -> list[dict[str, Any]]:
        path = f"{self.release.model_dir_on(host)}/warmup.json"
        try:
            records = json.loads(self.podman.read_file(host, path))
        except (ValueError, DeployError) as exc:
            raise CheckFailed(f"{path}: no stored example to smoke-test with ({exc})") from None
        if not isinstance(records, list) or not records:
            raise CheckFailed(f"{path} holds no example records")
        return list(records[: self.options.smoke_records])

    def _set(self, host: Host, port: int, weight: int) -> None:
        if any(s.host == host.name for s in self.servers):
            self.servers = with_server(self.servers, host.name, port=port, weight=weight, down=False)
        else:
            self.servers.append(Server(host.name, host.address, port, weight))
        self._apply()

    def _replace(self, state: HostState, canary: bool) -> None:
        host, opts = state.host, self.options
        self._drain(state)
        new = state.live.other() if state.live is not None else Container(host, COLORS[0])
        state.new = new
        self.podman.start_new(self.release, new)
        self.log(host.name, f"started {new.name} on port {new.port}")
        try:
            ready = checks.wait_ping(new.url, opts.ready_seconds)
        except CheckFailed as exc:
            raise CheckFailed(f"{new.name}: {exc}; its log ends:\n{self.podman.logs(new, 8)}") from None
        served = checks.release(new.url)
        if served.get("release") != self.release.label:
            raise CheckFailed(f"{new.name} reports release {served.get('release')!r}, "
                              f"not {self.release.label!r}")
        self.log(host.name, f"/ping after {ready:.1f}s, serves {served.get('model')} {served.get('version')}")
        checked = checks.smoke(new.url, self._records(host), served, opts.portal_smoke, opts.portal_headers)
        self.log(host.name, f"smoke test passed ({len(checked)} model(s): {'; '.join(checked)})")
        self._set(host, new.port, opts.canary_weight if canary and opts.canary_weight else WEIGHT)
        self.log(host.name, f"in service on port {new.port}" + (" as the canary" if canary else ""))
        watched = opts.watch.run(new.url)
        self.log(host.name, f"watched: {watched['errors']:g} 5xx of {watched['requests']:g}")
        if canary:
            baked = Watch(opts.canary_seconds, opts.watch.max_error_rate, opts.watch.interval).run(new.url)
            self.log(host.name, f"canary baked {opts.canary_seconds:g}s: {baked['errors']:g} 5xx of "
                     f"{baked['requests']:g}")
            self._set(host, new.port, WEIGHT)
        if state.live is not None:
            self.nginx.wait_drained()  # requests nginx sent to the old port before the switch
            self.podman.stop(state.live)
            self.log(host.name, f"stopped {state.live.name}")
        state.moved = True

    # --- back to the previous release ------------------------------------------------------------
    def _roll_back(self, states: list[HostState]) -> str:
        touched = [s for s in reversed(states) if s.new is not None]  # newest first
        problems = []
        for state in touched:
            try:
                self._restore(state)
                self.log(state.host.name, f"rolled back to {state.previous or 'nothing'}")
            except (CheckFailed, DeployError) as exc:
                problems.append(f"{state.host.name}: rollback failed: {exc}")
        if problems:
            return "ROLLBACK INCOMPLETE: " + "; ".join(problems)
        served = sorted({s.previous or "nothing" for s in states})
        return (f"rolled back {len(touched)} host(s) ({', '.join(s.host.name for s in touched)}); "
                f"every host serves {' / '.join(served)} as before")

    def _restore(self, state: HostState) -> None:
        host, new = state.host, state.new
        assert new is not None
        if state.live is None:  # first deploy on this host: take it out again
            self.servers = [s for s in self.servers if s.host != host.name]
            self._apply()
            self.nginx.wait_drained()
            self.podman.remove(new)
            return
        if not self.podman.running(host).get(state.live.color):
            if any(s.host == host.name for s in self.servers) and self._others_up(host):
                self.servers = with_server(self.servers, host.name, down=True)
                self._apply()
                self.nginx.wait_drained()
            self.podman.start_again(state.live)
            checks.wait_ping(state.live.url, self.options.ready_seconds)
        served = checks.release(state.live.url).get("release")
        if served != state.previous:
            raise CheckFailed(f"{state.live.name} came back with release {served!r}, not {state.previous!r}")
        self._set(host, state.live.port, WEIGHT)
        self.nginx.wait_drained()
        self.podman.remove(new)
