"""The image-layer secret scanner (tests/container/layers.py) on a fake docker-archive: it must
find each kind of secret it claims to, and pass what only looks like one."""

from __future__ import annotations

import base64
import io
import os
import tarfile
from pathlib import Path

from tests.container import layers


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_the_scanner_finds_each_kind_of_secret_and_passes_look_alikes(tmp_path: Path) -> None:
    data = tmp_path / "shared-data" / "movielens"
    data.mkdir(parents=True)
    (data / "ratings.csv").write_bytes(b"user,item,rating\n" + os.urandom(512))
    body = base64.encodebytes(os.urandom(300))
    pem = b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + body + b"-----END OPENSSH PRIVATE KEY-----\n"
    first = _tar({"app/.env": b"X=1", "root/.aws/credentials": b"[default]", "srv/repo/.git/HEAD": b"ref",
                  "lib/parser.so": b"\0-----BEGIN RSA PRIVATE KEY-----\0",  # a parser's constant
                  "docs/example.rst": b"aws_access_key_id = AKIAIOSFODNN7EXAMPLE"})  # AWS's placeholder
    second = _tar({"home/u/key": pem, "opt/conf.py": b'KEY = "AKIA2OGYBAH6QW7XZ5KM"',
                   "opt/data/r.csv": (data / "ratings.csv").read_bytes()})
    archive = tmp_path / "image.tar"
    (tmp_path / "layers").mkdir()
    (tmp_path / "layers" / "a.tar").write_bytes(first)
    (tmp_path / "layers" / "b.tar").write_bytes(second)
    with tarfile.open(archive, "w") as outer:
        outer.add(tmp_path / "layers" / "a.tar", "aaa/layer.tar")
        outer.add(tmp_path / "layers" / "b.tar", "bbb.tar")
    count, found = layers.scan(archive, layers.dataset_hashes(tmp_path / "shared-data"))
    assert count == 8
    assert {(f.path, f.what) for f in found} == {
        ("app/.env", "credentials file"), ("root/.aws/credentials", "credentials file"),
        ("srv/repo/.git/HEAD", ".git"), ("home/u/key", "private key"),
        ("opt/conf.py", "AWS access key AKIA2OGYBAH6QW7XZ5KM"), ("opt/data/r.csv", "dataset movielens/ratings.csv"),
    }


def test_build_history_with_a_secret_is_found() -> None:
    assert layers.history_findings(["RUN pip install x", "ENV PATH=/opt/venv/bin"]) == []
    assert layers.history_findings(["ARG REGISTRY_PASSWORD=hunter2", "RUN echo ok"]) == ["ARG REGISTRY_PASSWORD=hunter2"]
