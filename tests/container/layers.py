"""What must never be in an image layer: private keys, AWS access keys, credential files, .env,
.git, and the datasets of ../shared/data. Scans a ``podman save --format docker-archive`` tarball,
every file of every layer (a file deleted by a later layer still ships in the earlier one)."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# A whole PEM block with a body, not a parser's string constant nor a doc's "<private key>".
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=\r\n]{64,}-----END")
# Access key ids; AWS's documented placeholder (AKIAIOSFODNN7EXAMPLE, in boto3's docs) is not a key.
AWS_KEY = re.compile(rb"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])")
SECRET_NAMES = {".env", ".netrc", ".git-credentials", ".pypirc", ".npmrc", "id_rsa", "id_dsa", "id_ecdsa",
                "id_ed25519", ".bash_history", ".python_history"}
SECRET_SUFFIXES = (".aws/credentials", ".docker/config.json", ".ssh/authorized_keys", ".pgpass")
# Private keys that are public test vectors, by path, each with why.
KNOWN_TEST_KEYS = {
    "usr/lib/*/libgnutls.so.*": "GnuTLS's FIPS 140 self-test (known-answer) keys, compiled into Debian's "
                                "library and published in its source (lib/crypto-selftests-pk.c)",
}
CONTENT_LIMIT = 4 << 20  # larger files are libraries and data, read for dataset hashes only


@dataclass(frozen=True)
class Finding:
    layer: str
    path: str
    what: str


def dataset_hashes(folder: Path) -> dict[tuple[int, str], str]:
    """(size, sha256) of every file under ``folder`` -> its name."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        out[(path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())] = str(path.relative_to(folder))
    return out


def _layers(archive: Path) -> Iterator[tuple[str, tarfile.TarFile]]:
    with tarfile.open(archive) as outer:
        for member in outer:
            if member.isfile() and member.name.endswith(".tar"):
                fileobj = outer.extractfile(member)
                assert fileobj is not None
                with tarfile.open(fileobj=fileobj, mode="r:*") as layer:
                    yield member.name, layer


def scan(archive: Path, datasets: dict[tuple[int, str], str]) -> tuple[int, list[Finding]]:
    """(files scanned, findings) over every layer of a docker-archive tarball."""
    sizes = {size for size, _ in datasets}
    count, found = 0, []
    for layer_name, layer in _layers(archive):
        for entry in layer:
            count += 1
            path = entry.name.removeprefix("./")
            parts = path.split("/")
            if ".git" in parts:
                found.append(Finding(layer_name, path, ".git"))
            if parts[-1] in SECRET_NAMES or path.endswith(SECRET_SUFFIXES):
                found.append(Finding(layer_name, path, "credentials file"))
            if not entry.isfile() or (entry.size > CONTENT_LIMIT and entry.size not in sizes):
                continue
            handle = layer.extractfile(entry)
            assert handle is not None
            data = handle.read()
            if entry.size in sizes:
                name = datasets.get((entry.size, hashlib.sha256(data).hexdigest()))
                if name:
                    found.append(Finding(layer_name, path, f"dataset {name}"))
            if entry.size > CONTENT_LIMIT:
                continue
            if PRIVATE_KEY.search(data) and not any(fnmatch.fnmatch(path, known) for known in KNOWN_TEST_KEYS):
                found.append(Finding(layer_name, path, "private key"))
            keys = [k for k in AWS_KEY.findall(data) if not k.endswith(b"EXAMPLE")]
            if keys:
                found.append(Finding(layer_name, path, f"AWS access key {keys[0].decode()}"))
    return count, found


SECRET_WORDS = re.compile(r"(?i)(password|passwd|secret|token|api_?key|aws_access_key_id)\s*=\s*\S")


def history_findings(lines: Iterable[str]) -> list[str]:
    """Build steps (``podman image history``) that set a secret-looking variable or argument."""
    return [line for line in lines if SECRET_WORDS.search(line) or AWS_KEY.search(line.encode())]
