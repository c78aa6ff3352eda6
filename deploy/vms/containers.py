"""What runs on a VM: the release (image, model, environment) and the podman commands that start,
stop and inspect its blue and green containers there."""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from deploy.errors import DeployError
from deploy.vms.hosts import Host, Transport

COLORS = ("blue", "green")
# gunicorn's graceful timeout is 25 s (inference/server.py): podman's SIGKILL must come later.
STOP_SECONDS = 30
HASH_FILE = ".mlship-tarball.sha256"  # in a model folder the deploy unpacked: the tarball it came from


@dataclass(frozen=True)
class Release:
    """Everything a host needs to serve one release, sent to it explicitly by every deploy.

    ``model_dir`` and ``model_repository`` are paths on the host (mounted read-only at
    /opt/ml/model and /opt/ml/models; ``{state_dir}`` in them stands for the host's state_dir);
    ``environment`` goes into an env file of mode 0600 on the host (MLAPP_DATABASE_URL holds a
    password); ``volumes`` are extra HOST:CONTAINER[:ro] mounts.
    """

    label: str
    image: str
    model_dir: str
    model_repository: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()
    workers: int | None = None
    pull: bool = True

    def model_dir_on(self, host: Host) -> str:
        return self.model_dir.replace("{state_dir}", host.state_dir)

    def repository_on(self, host: Host) -> str | None:
        return self.model_repository.replace("{state_dir}", host.state_dir) if self.model_repository else None


@dataclass(frozen=True)
class Container:
    """One colour of a host: its podman name and the host port it serves on."""

    host: Host
    color: str

    @property
    def name(self) -> str:
        return f"{self.host.prefix}-{self.color}"

    @property
    def port(self) -> int:
        return self.host.ports[COLORS.index(self.color)]

    @property
    def url(self) -> str:
        return self.host.url(self.port)

    @property
    def env_file(self) -> str:
        return f"{self.host.state_dir}/{self.name}.env"

    def other(self) -> Container:
        return Container(self.host, COLORS[1 - COLORS.index(self.color)])


def env_file_text(release: Release, port: int) -> str:
    env = {**release.environment, "MLSHIP_RELEASE": release.label, "SAGEMAKER_BIND_TO_PORT": str(port)}
    if release.model_repository:
        env["MLAPP_MODEL_REPOSITORY"] = "/opt/ml/models"
    if release.workers:
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(release.workers)
    for key, value in env.items():
        if "\n" in value or "\n" in key or "=" in key:
            raise DeployError(f"environment variable {key!r} cannot go into an env file; nothing was changed")
    return "".join(f"{k}={v}\n" for k, v in sorted(env.items()))


def run_command(release: Release, box: Container) -> str:
    """``podman run`` for the release in ``box``. Host networking: the container listens on its
    colour's port of the VM itself (and reaches the database the VM reaches); ``--restart always``
    brings it back after a crash, podman-restart.service after a reboot."""
    mounts = ["-v", f"{release.model_dir_on(box.host)}:/opt/ml/model:ro"]
    if release.model_repository:
        mounts += ["-v", f"{release.repository_on(box.host)}:/opt/ml/models:ro"]
    for volume in release.volumes:
        mounts += ["-v", volume]
    argv = ["podman", "run", "-d", "--name", box.name, "--network", "host", "--restart", "always",
            "--stop-timeout", str(STOP_SECONDS), "--env-file", box.env_file,
            "--label", f"mlship.release={release.label}", "--label", f"mlship.color={box.color}",
            *mounts, release.image, "serve"]
    pull = (f"podman image exists {shlex.quote(release.image)} || podman pull -q {shlex.quote(release.image)}"
            if release.pull else "true")
    return f"{pull} && podman rm -f {shlex.quote(box.name)} >/dev/null 2>&1; {shlex.join(argv)}"


class Podman:
    """The container steps on one host, through its transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def _run(self, box: Container, command: str, what: str, stdin: str | bytes | None = None,
             timeout: float = 300) -> str:
        result = self.transport.run(box.host.name, command, stdin=stdin, timeout=timeout)
        if not result.ok:
            raise DeployError(f"{box.host.name}: {what} failed (exit {result.returncode}): "
                              f"{(result.stderr or result.stdout).strip()[-400:]}")
        return result.stdout

    def running(self, host: Host) -> dict[str, bool]:
        """Colour -> running, for the colours that exist on the host (stopped ones too)."""
        names = " ".join(shlex.quote(Container(host, c).name) for c in COLORS)
        out = self._run(Container(host, COLORS[0]), f"for n in {names}; do podman container inspect "
                        "--format '{{.Name}} {{.State.Running}}' \"$n\" 2>/dev/null; done; true",
                        "listing the containers")
        states = dict(line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2)
        return {c: states[Container(host, c).name] == "true"
                for c in COLORS if Container(host, c).name in states}

    def start_new(self, release: Release, box: Container) -> None:
        directory = shlex.quote(box.host.state_dir)
        self._run(box, f"umask 077 && mkdir -p {directory} && cat > {shlex.quote(box.env_file)}",
                  f"writing {box.env_file}", stdin=env_file_text(release, box.port))
        self._run(box, run_command(release, box), f"starting {box.name} ({release.image})", timeout=900)

    def start_again(self, box: Container) -> None:
        """Start a stopped container of the previous release (rollback)."""
        self._run(box, f"podman start {shlex.quote(box.name)}", f"restarting {box.name}")

    def stop(self, box: Container) -> None:
        """SIGTERM, then gunicorn finishes the requests it holds (graceful timeout 25 s)."""
        self._run(box, f"podman stop -t {STOP_SECONDS} {shlex.quote(box.name)} >/dev/null",
                  f"stopping {box.name}", timeout=STOP_SECONDS + 30)

    def remove(self, box: Container) -> None:
        self._run(box, f"podman rm -f -t {STOP_SECONDS} {shlex.quote(box.name)} >/dev/null 2>&1; true",
                  f"removing {box.name}", timeout=STOP_SECONDS + 30)

    def upload_model(self, host: Host, tarball: bytes, directory: str) -> bool:
        """Unpack a model.tar.gz (SageMaker's model artefact) into ``directory`` on the host, once:
        a folder is written whole beside it and moved into place, with the tarball's SHA-256 in
        ``HASH_FILE``, and never changed afterwards (running containers mount it). The same tarball
        again is a no-op (False); a folder already there with other contents is refused, before
        anything changed, rather than pulled away from under a container that mounts it."""
        digest = hashlib.sha256(tarball).hexdigest()
        quoted, stamp = shlex.quote(directory), shlex.quote(f"{directory}/{HASH_FILE}")
        state = self._run(Container(host, COLORS[0]),
                          f"if [ -f {stamp} ]; then cat {stamp}; elif [ -e {quoted} ]; then echo other; fi",
                          f"looking at {directory}").strip()
        if state == digest:
            return False
        if state:
            raise DeployError(f"{host.name}: {directory} already holds another model (tarball "
                              f"{state[:12] if state != 'other' else 'unknown'}, not {digest[:12]}); "
                              "models are never replaced under a container that mounts them: give a new "
                              "--model-dir, or none (the deploy names it by the tarball's hash)")
        part = shlex.quote(f"{directory}.part-{os.getpid()}")
        self._run(Container(host, COLORS[0]),
                  f"rm -rf {part} && mkdir -p {part} && tar -xzf - -C {part} && "
                  f"echo {digest} > {part}/{HASH_FILE} && chmod -R a+rX {part} && "
                  # another deploy may have just written the same folder: theirs stays, ours goes
                  f"{{ mv -T {part} {quoted} 2>/dev/null || rm -rf {part}; }} && "
                  f"[ \"$(cat {stamp})\" = {digest} ]",
                  f"unpacking the model into {directory}", stdin=tarball)
        return True

    def mounted(self, host: Host) -> set[str]:
        """The host folders every container of this host (running or stopped: a stopped colour is
        the rollback) mounts."""
        names = " ".join(shlex.quote(Container(host, c).name) for c in COLORS)
        out = self._run(Container(host, COLORS[0]), f"for n in {names}; do podman container inspect "
                        "--format '{{range .Mounts}}{{.Source}}\n{{end}}' \"$n\" 2>/dev/null; done; true",
                        "listing the containers' mounts")
        return {line.strip().rstrip("/") for line in out.splitlines() if line.strip()}

    def prune_models(self, host: Host, folder: str, keep: set[str]) -> list[str]:
        """Remove the model folders the deploy wrote under ``folder`` (those with ``HASH_FILE``) that
        no container of the host mounts and ``keep`` does not name; what was removed."""
        in_use = self.mounted(host) | {k.rstrip("/") for k in keep}
        listing = self._run(Container(host, COLORS[0]),
                            f"for d in {shlex.quote(folder.rstrip('/'))}/*/; do "
                            f"[ -f \"$d{HASH_FILE}\" ] && echo \"${{d%/}}\"; done; true",
                            f"listing {folder}")
        gone = [d for d in listing.split() if d.rstrip("/") not in in_use]
        if gone:
            self._run(Container(host, COLORS[0]), f"rm -rf {shlex.join(gone)}", f"pruning {folder}")
        return gone

    def read_file(self, host: Host, path: str) -> str:
        return self._run(Container(host, COLORS[0]), f"cat {shlex.quote(path)}", f"reading {path}")

    def logs(self, box: Container, lines: int = 20) -> str:
        result = self.transport.run(box.host.name, f"podman logs --tail {lines} {shlex.quote(box.name)} 2>&1")
        return result.stdout.strip()
