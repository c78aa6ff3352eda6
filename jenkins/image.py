"""Build the image with podman on a machine without a Docker engine or a registry.

    python -m jenkins.image build --tag mlship:dev     # prints one JSON summary line
    python -m jenkins.image push --image mlship:abc --registry 123.dkr.ecr.eu-west-1.amazonaws.com/ml \
        [--login env|ecr|none] [--tls-verify false]

Push logs in first: `env` reads $REGISTRY_USER and $REGISTRY_PASSWORD (Jenkins' credentials binding)
and hands the password to `podman login --password-stdin`, so it is never on a command line or in a
log; `ecr` asks ECR for a token with the AWS credentials in the environment.

Steps, each idempotent: podman's engine settings for this kind of kernel; a local
``debian:bookworm-slim`` base made with debootstrap when no registry can be reached (cached
as a tarball; the host's extra CA certificates go into this local base only, never into the
project's image); then ``podman build`` of the project's Dockerfile, and a CycloneDX SBOM of what
the built image holds (its Python distributions and Debian packages, read from inside it) in
build/reports/sbom/<tag>.cdx.json, which the pipeline archives with its reports.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
CACHE = Path(os.environ.get("MLSHIP_CACHE", Path.home() / ".cache" / "mlship"))
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
SBOM_DIR = ROOT / "build" / "reports" / "sbom"
ENGINE_CONF = """\
# Written by mlship's jenkins/image.py: defaults that work on kernels without the
# capability podman's default ulimits need, and with a hybrid cgroup layout.
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def sh(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kw)  # type: ignore[call-overload]


def podman_available() -> bool:
    if not shutil.which("podman"):
        return False
    return subprocess.run(["podman", "info"], capture_output=True).returncode == 0


def configure_engine() -> None:
    if CONTAINERS_CONF.exists() and "mlship" in CONTAINERS_CONF.read_text():
        return
    if CONTAINERS_CONF.exists() and "runtime" in CONTAINERS_CONF.read_text():
        return  # somebody configured it on purpose
    CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
    CONTAINERS_CONF.write_text(ENGINE_CONF)


def image_exists(ref: str) -> bool:
    return subprocess.run(["podman", "image", "exists", ref]).returncode == 0


def _mirror() -> str:
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split(":", 1)[1].strip()
    return "http://deb.debian.org/debian"


def ensure_base_image() -> str:
    """Make sure FROM debian:bookworm-slim resolves, building it locally when needed."""
    if image_exists(BASE_IMAGE):
        return "present"
    pulled = subprocess.run(["podman", "pull", "-q", BASE_IMAGE], capture_output=True, timeout=120)
    if pulled.returncode == 0:
        return "pulled"
    tarball = CACHE / "debian-bookworm-minbase.tar"
    if not tarball.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            sh(["debootstrap", "--variant=minbase", "--include=ca-certificates", "bookworm",
                str(rootfs), _mirror()], stdout=subprocess.DEVNULL)
            extra = Path("/usr/local/share/ca-certificates")
            if extra.is_dir() and any(extra.iterdir()):
                # Only the local stand-in base trusts this machine's TLS proxy.
                target = rootfs / "usr/local/share/ca-certificates"
                target.mkdir(parents=True, exist_ok=True)
                for cert in extra.iterdir():
                    shutil.copy(cert, target / cert.name)
                sh(["chroot", str(rootfs), "update-ca-certificates"], stdout=subprocess.DEVNULL)
                (rootfs / "etc/pip.conf").write_text(
                    "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
            for cache_dir in ("var/cache/apt/archives", "var/lib/apt/lists"):
                shutil.rmtree(rootfs / cache_dir, ignore_errors=True)
                (rootfs / cache_dir).mkdir(parents=True, exist_ok=True)
            partial = tarball.with_suffix(".partial")
            sh(["tar", "-C", str(rootfs), "-cf", str(partial), "."])
            partial.rename(tarball)
    with open(tarball, "rb") as fh:
        sh(["podman", "import", "-", BASE_IMAGE], stdin=fh, stdout=subprocess.DEVNULL)
    return "debootstrap"


# Run inside the image: what is installed, not what a lock file asked for.
_INVENTORY = r"""
import importlib.metadata as md, json, subprocess
python = sorted({(d.metadata["Name"], d.version) for d in md.distributions() if d.metadata["Name"]})
fmt = "${Package}\t${Version}\t${Architecture}\n"
debian = subprocess.run(["dpkg-query", "-W", "-f=" + fmt], capture_output=True, text=True).stdout
print(json.dumps({"python": python, "debian": [line.split("\t") for line in debian.splitlines()]}))
"""


def _purl(kind: str, name: str, version: str, qualifiers: str = "") -> str:
    quote = urllib.parse.quote
    return f"pkg:{kind}/{quote(name, safe='/')}@{quote(version, safe='')}{qualifiers}"


def sbom(image: str, inventory: dict[str, Any], image_id: str) -> dict[str, Any]:
    """A CycloneDX 1.5 document of ``inventory`` (the image's Python and Debian packages)."""
    components = []
    for name, version in inventory["python"]:
        ref = _purl("pypi", name.lower().replace("_", "-"), version)
        components.append({"type": "library", "bom-ref": ref, "name": name, "version": version, "purl": ref})
    for name, version, arch in inventory["debian"]:
        ref = _purl("deb", f"debian/{name}", version, f"?arch={arch}&distro=debian-12")
        components.append({"type": "library", "bom-ref": ref, "name": name, "version": version, "purl": ref})
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "metadata": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tools": {"components": [{"type": "application", "name": "mlship jenkins.image"}]},
            "component": {"type": "container", "bom-ref": image_id, "name": image, "version": image_id},
        },
        "components": components,
    }


def write_sbom(image: str, folder: Path = SBOM_DIR) -> Path:
    """Write the SBOM of ``image`` to ``folder``/<tag>.cdx.json and return its path."""
    image_id = sh(["podman", "image", "inspect", image, "--format", "{{.Id}}"],
                  capture_output=True).stdout.strip()
    found = sh(["podman", "run", "--rm", "--network=none", "--user", "65534:65534", image,
                "python", "-c", _INVENTORY], capture_output=True).stdout
    document = sbom(image, json.loads(found), image_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (image.replace("/", "_").replace(":", "_") + ".cdx.json")
    target.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return target


def build(tag: str, base: str | None = None) -> dict[str, object]:
    configure_engine()
    started = time.monotonic()
    base_source = ensure_base_image() if base is None else "given"
    cmd = ["podman", "build", "--network=host", "-t", tag, "-f", str(ROOT / "Dockerfile")]
    if base:
        cmd += ["--build-arg", f"BASE_IMAGE={base}"]
    sh([*cmd, str(ROOT)])
    size = sh(["podman", "image", "inspect", tag, "--format", "{{.Size}}"],
              capture_output=True).stdout.strip()
    return {"image": tag, "base": base_source, "size_bytes": int(size),
            "size_mb": round(int(size) / 1e6, 1), "sbom": str(write_sbom(tag)),
            "seconds": round(time.monotonic() - started, 1)}


def _registry_host(registry: str) -> str:
    return registry.split("/", 1)[0]


def login(registry: str, how: str, tls_verify: bool, environ: dict[str, str]) -> str:
    """podman login to the registry's host; the password goes through stdin only."""
    if how == "none":
        return "none"
    if how == "ecr":
        import base64

        import boto3

        token = boto3.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
        user, _, password = base64.b64decode(token).decode().partition(":")
    else:
        user, password = environ.get("REGISTRY_USER", ""), environ.get("REGISTRY_PASSWORD", "")
        if not user or not password:
            raise SystemExit("push: $REGISTRY_USER / $REGISTRY_PASSWORD are empty (bind the registry "
                             "credentials with withCredentials, or use --login ecr|none)")
    sh(["podman", "login", f"--tls-verify={str(tls_verify).lower()}", "--username", user,
        "--password-stdin", _registry_host(registry)], input=password, stdout=subprocess.DEVNULL)
    return how


def push(image: str, registry: str, how: str, tls_verify: bool) -> dict[str, object]:
    """Tag IMAGE as REGISTRY/IMAGE and push it; returns the pushed reference and its digest."""
    started = time.monotonic()
    login(registry, how, tls_verify, dict(os.environ))
    ref = f"{registry.rstrip('/')}/{image.rpartition('/')[2]}"
    sh(["podman", "tag", image, ref])
    with tempfile.TemporaryDirectory(prefix="push-") as tmp:
        digest_file = Path(tmp) / "digest"
        sh(["podman", "push", "--quiet", f"--tls-verify={str(tls_verify).lower()}",
            "--digestfile", str(digest_file), ref])
        digest = digest_file.read_text().strip()
    return {"image": ref, "digest": digest, "login": how, "seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the image with podman.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--tag", default="mlship:dev")
    b.add_argument("--base", default=None, help="use this base image instead of the local debian")
    p = sub.add_parser("push")
    p.add_argument("--image", required=True, help="the local image, e.g. mlship:COMMIT")
    p.add_argument("--registry", required=True, help="registry host[/namespace] to push to")
    p.add_argument("--login", choices=("env", "ecr", "none"), default="env")
    p.add_argument("--tls-verify", choices=("true", "false"), default="true")
    args = parser.parse_args(argv)
    if not podman_available():
        print(json.dumps({"ok": False, "error": "podman is not installed or not working"}))
        return 1
    if args.cmd == "push" and not args.registry.strip("/"):
        print(json.dumps({"ok": False, "error": "--registry is empty: set the REGISTRY parameter"}))
        return 1
    try:
        if args.cmd == "push":
            summary = push(args.image, args.registry, args.login, args.tls_verify == "true")
        else:
            summary = build(args.tag, args.base)
    except subprocess.CalledProcessError as exc:
        print(json.dumps({"ok": False, "error": f"{exc.cmd[0]} failed with exit code {exc.returncode}"}))
        return 1
    print(json.dumps({"ok": True, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
