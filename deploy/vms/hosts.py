"""How the deploy reaches a VM: the inventory entry of each host and the transport that runs shell
commands on it (SSH by default; a local shell where the "host" is this machine)."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from deploy.errors import DeployError

DEFAULT_PORTS = (8081, 8082)  # blue, green: the new release starts beside the old one


@dataclass(frozen=True)
class Host:
    """One VM of the inventory.

    ``name`` is what the transport connects to (an ssh Host alias); ``address`` is where nginx and
    the deploy reach its HTTP ports; ``ports`` are the host ports of the blue and the green
    container; ``prefix`` names the containers (PREFIX-blue, PREFIX-green) and ``state_dir`` is
    where their environment files live on the host.
    """

    name: str
    address: str
    ports: tuple[int, int] = DEFAULT_PORTS
    prefix: str = "mlship"
    state_dir: str = "/var/lib/mlship"

    def url(self, port: int) -> str:
        return f"http://{self.address}:{port}"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Host:
        try:
            name = str(raw["name"])
            ports = tuple(int(p) for p in raw.get("ports", DEFAULT_PORTS))
        except (KeyError, TypeError, ValueError) as exc:
            raise DeployError(f"inventory entry {raw!r} is invalid ({exc}); nothing was changed") from None
        if len(ports) != 2 or ports[0] == ports[1]:
            raise DeployError(f"inventory entry {name}: 'ports' must be two different ports "
                              "(blue, green); nothing was changed")
        return cls(name=name, address=str(raw.get("address", name)), ports=(ports[0], ports[1]),
                   prefix=str(raw.get("prefix", "mlship")),
                   state_dir=str(raw.get("state_dir", "/var/lib/mlship")))


def parse_hosts(text: str, ports: tuple[int, int] = DEFAULT_PORTS) -> list[Host]:
    """``vm1,vm2`` or ``vm1=10.0.0.1,vm2=10.0.0.2`` (ssh alias = HTTP address); the legacy
    ``address:port`` form keeps that port as the blue one."""
    hosts = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, _, address = item.partition("=")
        address, _, port = (address or name).partition(":")
        name = name.partition(":")[0]
        try:
            host_ports = (int(port), int(port) + 1) if port else ports
        except ValueError:
            raise DeployError(f"--hosts entry {item!r}: {port!r} is not a port; "
                              "nothing was changed") from None
        hosts.append(Host(name=name, address=address, ports=host_ports))
    return hosts


def load_inventory(path: Path) -> list[Host]:
    """A JSON list of host entries (see :class:`Host`), or ``{"hosts": [...]}``."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DeployError(f"inventory {path} cannot be read ({exc}); nothing was changed") from None
    entries = raw.get("hosts", []) if isinstance(raw, dict) else raw
    return [Host.from_dict(e) for e in entries]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Transport(Protocol):
    """Runs one shell command on a host; ``stdin`` feeds it (files are written that way, so secrets
    never appear on a command line)."""

    def run(self, host: str, command: str, stdin: str | bytes | None = None,
            timeout: float = 120) -> Result: ...


def _run(argv: Sequence[str], stdin: str | bytes | None, timeout: float) -> Result:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    try:
        done = subprocess.run(list(argv), input=data, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Result(124, "", f"timed out after {timeout:g}s: {shlex.join(argv)}")
    except OSError as exc:
        return Result(127, "", str(exc))
    return Result(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))


@dataclass
class SSH:
    """``ssh [-F CONFIG] HOST COMMAND``: keys and host aliases come from the ssh config (in Jenkins,
    from an SSH credential), never from the deploy's arguments."""

    config: Path | None = None
    options: tuple[str, ...] = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")

    def run(self, host: str, command: str, stdin: str | bytes | None = None, timeout: float = 120) -> Result:
        config = ["-F", str(self.config)] if self.config is not None else []
        return _run(["ssh", *config, *self.options, host, command], stdin, timeout)


class LocalShell:
    """Runs the command on this machine (the nginx host when it is the agent itself; unit tests)."""

    def run(self, host: str, command: str, stdin: str | bytes | None = None, timeout: float = 120) -> Result:
        return _run(["bash", "-c", command], stdin, timeout)


def transport_for(spec: str, ssh_config: Path | None) -> Transport:
    """``ssh`` (default) or ``local``."""
    if spec == "local":
        return LocalShell()
    if spec == "ssh":
        return SSH(ssh_config)
    raise DeployError(f"unknown transport {spec!r} (ssh or local); nothing was changed")
