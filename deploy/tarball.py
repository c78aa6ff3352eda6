"""model.tar.gz, read and unpacked safely: the manifest and warm-up examples it carries, and
extraction that refuses what could write outside the target (`..`, absolute paths, links that
leave it, devices and FIFOs). A champion's tarball comes from S3, so it is treated as untrusted."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from deploy.errors import DeployError

MANIFEST = "model.json"  # what `train` writes last into the model directory (modelformat.manifest)
WARMUP = "warmup.json"  # the stored examples each model family's warm-up predicts


def _member_name(member: tarfile.TarInfo) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise DeployError(f"model.tar.gz member {member.name!r} points outside the model directory")
    return PurePosixPath(*[p for p in path.parts if p != "."]) if path.parts else path


def _check(member: tarfile.TarInfo) -> None:
    name = _member_name(member)
    if member.isdev() or member.isfifo():
        raise DeployError(f"model.tar.gz member {member.name!r} is a device or FIFO")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        # A symlink is relative to its folder, a hard link to the archive's root.
        joined = name.parent / target if member.issym() else target
        if target.is_absolute() or _escapes(joined):
            raise DeployError(f"model.tar.gz link {member.name!r} -> {member.linkname!r} "
                              "leaves the model directory")


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def check(tar_path: Path) -> None:
    """Refuse a tarball with a member that could write outside the folder it is unpacked in."""
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar.getmembers():
            _check(member)


def extract(tar_path: Path, target: Path) -> Path:
    """Unpack into target after checking every member; nothing is written if one is refused."""
    with tarfile.open(tar_path, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check(member)
        target.mkdir(parents=True, exist_ok=True)
        tar.extractall(target, members=members, filter="data")  # the stdlib's own guard as well
    return target


def read_text(tar_path: Path, name: str) -> str | None:
    """One top-level file of the model directory as UTF-8 text, or None when the tarball has none."""
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar.getmembers():
            if member.isfile() and str(_member_name(member)) == name:
                handle = tar.extractfile(member)
                assert handle is not None  # a regular file always has a body
                return handle.read().decode("utf-8")
    return None


def read_json(tar_path: Path, name: str) -> Any:
    """One top-level JSON file of the model directory, or None when the tarball has none."""
    text = read_text(tar_path, name)
    return None if text is None else json.loads(text)


def warmup_examples(tar_path: Path) -> list[dict[str, Any]]:
    """The examples the model predicts at start-up; the deploy's smoke test sends the same ones."""
    if read_json(tar_path, MANIFEST) is None:
        raise DeployError(f"{tar_path} holds no {MANIFEST}: not a model directory made by `train`")
    examples = read_json(tar_path, WARMUP)
    if not isinstance(examples, list) or not examples:
        raise DeployError(f"{tar_path} holds no {WARMUP} examples to smoke-test the endpoint with")
    return examples


def example_requests(examples: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The warm-up examples as the requests a smoke test sends: records with the same fields
    together, each kind in a request of its own (a propensity model stores pair records and
    top-K records, which one request may not mix)."""
    kinds: dict[frozenset[str], list[dict[str, Any]]] = {}
    for record in examples:
        kinds.setdefault(frozenset(record), []).append(record)
    return list(kinds.values())
