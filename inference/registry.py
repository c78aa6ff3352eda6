"""The one model registry: loading, warm-up, readiness, versions and eviction of every model served.

Three kinds of model answer requests, all held here: the default model (/opt/ml/model, loaded
in the background at start; /ping reports it), the repository's named versions
(``<name>/<version>/model.json`` or ``<name>/model/model.json`` under MLAPP_MODEL_REPOSITORY;
loaded on first use, kept in a small LRU) and models loaded through SageMaker's multi-model
API. A predictor is handed out only after its warm-up prediction worked, and the default
model is never loaded twice: its repository entry is the same loaded copy.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.errors import Conflict, ModelNotReady, NotFound
from inference.predictors import Predictor, display_name
from modelformat import manifest as manifest_io
from modelformat.manifest import model_version

log = logging.getLogger("inference.registry")
Loader = Callable[[Path, int, str | None], Predictor]


def _warm(predictor: Predictor) -> Predictor:
    predictor.warmup()
    return predictor


class ModelSlot:
    """One model loading in the background, and how that went (what /ping reports)."""

    def __init__(self, load: Callable[[], Predictor] | None = None,
                 predictor: Predictor | None = None, deferred: bool = False) -> None:
        self.state = "loading"
        self.reason = "model is loading"
        self.predictor: Predictor | None = None
        self.loaded_at: float | None = None
        self._done = threading.Event()
        self._load = load
        if predictor is not None:
            self._finish(lambda: predictor)
        elif load is not None:
            if not deferred:
                self.start()
        else:
            self.state, self.reason = "failed", "no model configured"
            self._done.set()

    def start(self) -> None:
        """Begin loading in the background (once; a ready or failed slot ignores it)."""
        load, self._load = self._load, None
        if load is not None:
            threading.Thread(target=self._finish, args=(load,), name="model-loader", daemon=True).start()

    def _finish(self, load: Callable[[], Predictor]) -> None:
        started = time.monotonic()
        try:
            predictor = _warm(load())
        except Exception as exc:  # loading errors must reach /ping, not kill the worker
            log.exception("model failed to load")
            self.state, self.reason = "failed", f"model failed to load: {type(exc).__name__}: {exc}"
            self._done.set()
            return
        self.predictor = predictor
        self.loaded_at = time.time()
        self.state, self.reason = "ready", "ok"
        self._done.set()
        log.info("model %s (version %s) ready in %.2fs", predictor.name, predictor.version,
                 time.monotonic() - started)

    def get(self, wait: float = 0.0) -> Predictor:
        """The predictor; a request that arrives during warm-up waits up to ``wait`` seconds."""
        if self.predictor is None and wait > 0:
            self._done.wait(wait)
        if self.predictor is None:
            raise ModelNotReady(self.reason)
        return self.predictor

    def wait(self, timeout: float = 60.0) -> bool:
        self._done.wait(timeout)
        return self.state == "ready"


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
                "metrics": m.get("metrics", {}), "path": str(self.path), "input_example": self.example}

    @functools.cached_property  # read once per entry (entries are rescanned), not per GET /api/models
    def example(self) -> list[Any] | None:
        """The records the model's warm-up predicts (what to send it, as MLflow's input example;
        the deploy's smoke test sends them to every model a host serves), or None."""
        try:
            found = json.loads((self.path / manifest_io.WARMUP).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, list) else None


def _default_loader(path: Path, threads: int, name: str | None) -> Predictor:
    from inference import predictors

    return predictors.load(path, threads, name)


class ModelRegistry:
    def __init__(self, default: ModelSlot, default_dir: Path | None, root: Path | None = None,
                 threads: int = 1, max_loaded: int = 8, loader: Loader | None = None,
                 rescan_seconds: float = 2.0, load_wait: float = 0.0) -> None:
        self.default = default
        self.default_dir = default_dir
        self.root = root
        self.threads = threads
        self.max_loaded = max_loaded
        self.load_wait = load_wait  # how long a request may wait for the default model's warm-up
        self._loader = loader or _default_loader
        self._loaded: OrderedDict[tuple[str, str], Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self._mme: dict[str, Path] = {}
        self.rescan_seconds = rescan_seconds
        self._scanned: tuple[float, list[ModelEntry]] | None = None

    @classmethod
    def for_directory(cls, default_dir: Path, root: Path | None, threads: int, name: str | None,
                      load_wait: float, loader: Loader | None = None,
                      predictor: Predictor | None = None, deferred: bool = False) -> ModelRegistry:
        """The registry of a `serve` process: ``default_dir`` loads in the background, from now or,
        ``deferred``, from ``default.start()``."""
        load = loader or _default_loader
        slot = (ModelSlot(predictor=predictor) if predictor is not None
                else ModelSlot(lambda: load(default_dir, threads, name), deferred=deferred))
        return cls(slot, default_dir, root, threads, loader=load, load_wait=load_wait)

    # --- the default model -----------------------------------------------------------
    def default_model(self) -> Predictor:
        return self.default.get(wait=self.load_wait)

    # --- discovery ---------------------------------------------------------------------
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
            version = model_version(self.default_dir)
            found[(display_name(m), version)] = ModelEntry(display_name(m), version, self.default_dir, m)
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
        """A repository model, loaded and warmed up on first use."""
        entry = self.resolve(name, version)
        if self.default_dir is not None and entry.path == self.default_dir:
            return entry, self.default_model()
        key = (entry.name, entry.version)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return entry, self._loaded[key]
        return entry, self._keep(key, _warm(self._loader(entry.path, self.threads, entry.name)))

    def _keep(self, key: tuple[str, str], predictor: Predictor) -> Predictor:
        with self._lock:
            self._loaded[key] = predictor
            self._loaded.move_to_end(key)
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
        return predictor

    # --- SageMaker multi-model endpoint API ------------------------------------------
    def mme_load(self, name: str, url: str) -> None:
        path = Path(url)
        with self._lock:
            if name in self._mme:
                raise Conflict(f"Model {name} is already loaded")
        if not (path / manifest_io.MANIFEST).is_file():
            raise NotFound(f"No model directory with model.json at {url}")
        predictor = _warm(self._loader(path, self.threads, name))
        with self._lock:
            self._mme[name] = path
        self._keep((f"mme:{name}", ""), predictor)

    def mme_get(self, name: str) -> Predictor:
        key = (f"mme:{name}", "")
        with self._lock:
            predictor = self._loaded.get(key)
            path = self._mme.get(name)
        if predictor is None and path is not None:  # pushed out of the LRU cache: load it again
            predictor = self._keep(key, _warm(self._loader(path, self.threads, name)))
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
        with self._lock:
            return [{"modelName": n, "modelUrl": str(p)} for n, p in sorted(self._mme.items())]
