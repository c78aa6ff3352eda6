"""The model directory's manifest (model.json), and committing a model atomically.

A model is built in a hidden staging folder inside /opt/ml/model and moved into place
only when complete; model.json is written last and is the commit marker. A failed run
removes its staging folder, so nothing half-written ever looks like a model.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "model.json"
WARMUP = "warmup.json"  # the stored input records each family's warm-up predicts (a model's example)
FORMAT_VERSION = 1
# Reported name -> distributions that provide it (the CPU builds have their own names).
_LIBRARIES = {
    "numpy": ("numpy",), "pandas": ("pandas",), "scipy": ("scipy",),
    "scikit-learn": ("scikit-learn",), "xgboost": ("xgboost-cpu", "xgboost"),
    "tensorflow": ("tensorflow-cpu", "tensorflow"), "keras": ("keras",),
}


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name, dists in _LIBRARIES.items():
        for dist in dists:
            try:
                found[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``; an error (a full disk: ENOSPC) names the file it was writing."""
    try:
        with open(path, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def read(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {model_dir}: not a model directory made by `train`")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


class ModelWriter:
    """Stage files, then commit them and the manifest into ``model_dir``."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.staging = model_dir / f".staging-{os.getpid()}"

    def __enter__(self) -> ModelWriter:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)
        (self.model_dir / f".{MANIFEST}.tmp").unlink(missing_ok=True)

    def commit(self, manifest: dict[str, Any]) -> Path:
        full = {
            "format_version": FORMAT_VERSION,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "libraries": library_versions(),
            **manifest,
        }
        # The manifest is written before anything moves: a full disk fails here, with the previous
        # model (if any) untouched; what follows are renames, which need no space.
        tmp = self.model_dir / f".{MANIFEST}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(json.dumps(full, indent=2, default=str, ensure_ascii=False))
            out.flush()
            os.fsync(out.fileno())
        stale = self.model_dir / MANIFEST
        stale.unlink(missing_ok=True)
        for entry in sorted(self.staging.iterdir()):
            target = self.model_dir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
        os.replace(tmp, stale)
        return stale


def model_version(model_dir: Path) -> str:
    """A short content hash of the manifest: changes whenever the model is retrained."""
    import hashlib

    return hashlib.sha256((model_dir / MANIFEST).read_bytes()).hexdigest()[:12]
