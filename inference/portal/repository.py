"""The model repository: several models and versions, each a model directory with its manifest.

Layouts under ``MLAPP_MODEL_REPOSITORY``: ``<name>/<version>/model.json`` (versions side by
side) or ``<name>/model/model.json`` (SageMaker multi-model layout, version = content hash).
The model `serve` hosts at /invocations (/opt/ml/model) is listed too, under its manifest's
name. Loaded predictors are kept in a small LRU; the multi-model API loads and unloads
explicitly.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference import predictors
from inference.errors import Conflict, NotFound
from inference.predictors import Predictor, model_version
from training import manifest as manifest_io


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    path: Path
    manifest: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {"name": self.name, "version": self.version, "family": m.get("family"),
                "algorithm": m.get("algorithm"), "created_at": m.get("created_at"),
                "metrics": m.get("metrics", {}), "path": str(self.path)}


class Repository:
    def __init__(self, root: Path | None, default_dir: Path | None, threads: int = 1,
                 max_loaded: int = 8, loader: Callable[[Path, int, str], Predictor] | None = None,
                 rescan_seconds: float = 2.0) -> None:
        self.root = root
        self.default_dir = default_dir
        self.threads = threads
        self.max_loaded = max_loaded
        self._loader = loader or (lambda path, threads, name: predictors.load(path, threads, name))
        self._loaded: OrderedDict[tuple[str, str], Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self._mme: dict[str, Path] = {}
        self.rescan_seconds = rescan_seconds
        self._scanned: tuple[float, list[ModelEntry]] | None = None

    # --- discovery -------------------------------------------------------------------
    def entries(self) -> list[ModelEntry]:
        """The repository's models, rescanned at most every ``rescan_seconds`` (a scan reads every
        manifest: per request it cost more than the prediction)."""
        now = time.monotonic()
        scanned = self._scanned
        if scanned is None or now - scanned[0] >= self.rescan_seconds:
            scanned = self._scanned = (now, self._scan())
        return scanned[1]

    def _scan(self) -> list[ModelEntry]:
        found: dict[tuple[str, str], ModelEntry] = {}
        if self.default_dir is not None and (self.default_dir / manifest_io.MANIFEST).is_file():
            m = manifest_io.read(self.default_dir)
            name = str(m.get("model_name") or m.get("algorithm"))
            found[(name, model_version(self.default_dir))] = ModelEntry(
                name, model_version(self.default_dir), self.default_dir, m)
        if self.root is not None and self.root.is_dir():
            for model in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for version_dir in sorted(p for p in model.iterdir() if p.is_dir()):
                    if not (version_dir / manifest_io.MANIFEST).is_file():
                        continue
                    version = model_version(version_dir) if version_dir.name == "model" else version_dir.name
                    found[(model.name, version)] = ModelEntry(model.name, version, version_dir,
                                                              manifest_io.read(version_dir))
        return sorted(found.values(), key=lambda e: (e.name, str(e.manifest.get("created_at")), e.version))

    def resolve(self, name: str, version: str | None = None) -> ModelEntry:
        candidates = [e for e in self.entries() if e.name == name]
        if not candidates:
            known = sorted({e.name for e in self.entries()})
            raise NotFound(f"Unknown model '{name}'; known models: {', '.join(known) or 'none'}")
        if version in (None, "", "latest"):
            return candidates[-1]
        for entry in candidates:
            if entry.version == version:
                return entry
        versions = ", ".join(e.version for e in candidates)
        raise NotFound(f"Model '{name}' has no version '{version}'; versions: {versions}")

    def predictor(self, name: str, version: str | None = None) -> tuple[ModelEntry, Predictor]:
        entry = self.resolve(name, version)
        key = (entry.name, entry.version)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return entry, self._loaded[key]
        loaded = self._loader(entry.path, self.threads, entry.name)
        with self._lock:
            self._loaded[key] = loaded
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
        return entry, loaded

    # --- SageMaker multi-model endpoint API ------------------------------------------
    def mme_load(self, name: str, url: str) -> None:
        path = Path(url)
        if name in self._mme:
            raise Conflict(f"Model {name} is already loaded")
        if not (path / manifest_io.MANIFEST).is_file():
            raise NotFound(f"No model directory with model.json at {url}")
        predictor = self._loader(path, self.threads, name)
        with self._lock:
            self._mme[name] = path
            self._loaded[(f"mme:{name}", "")] = predictor

    def mme_get(self, name: str) -> Predictor:
        key = (f"mme:{name}", "")
        with self._lock:
            predictor = self._loaded.get(key)
            path = self._mme.get(name)
        if predictor is None and path is not None:  # pushed out of the LRU cache: load it again
            predictor = self._loader(path, self.threads, name)
            with self._lock:
                self._loaded[key] = predictor
        if predictor is None:
            raise NotFound(f"Model not found: {name}")
        return predictor

    def target(self, target: str) -> Predictor:
        """The model an X-Amzn-SageMaker-Target-Model header names: a model loaded through
        POST /models, else ``<name>[/<version>]`` of the repository (``.tar.gz`` is ignored)."""
        ref = target.strip().removesuffix(".tar.gz").strip("/")
        with self._lock:
            loaded = ref in self._mme
        if loaded:
            return self.mme_get(ref)
        name, _, version = ref.partition("/")
        return self.predictor(name, version or None)[1]

    def mme_unload(self, name: str) -> None:
        with self._lock:
            if name not in self._mme:
                raise NotFound(f"Model not found: {name}")
            del self._mme[name]
            self._loaded.pop((f"mme:{name}", ""), None)

    def mme_list(self) -> list[dict[str, str]]:
        return [{"modelName": n, "modelUrl": str(p)} for n, p in sorted(self._mme.items())]


def manifest_json(entry: ModelEntry) -> str:
    return json.dumps(entry.summary(), default=str)
