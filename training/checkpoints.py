"""Checkpoints in /opt/ml/checkpoints, and the stop flag SIGTERM raises.

SageMaker syncs the checkpoint folder to S3 and, on a spot restart, downloads it before
the container starts. Files are written atomically (temp + rename), the newest few are
kept, and a file still marked ``.sagemaker-uploading`` is never resumed from. A
checkpoint carries a key (hyperparameters + data fingerprint) so a job never resumes
from another job's state.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("training.checkpoints")
KEEP = 5
_NAME = re.compile(r"^ckpt-(\d{8})\.(\w+)$")


class StopFlag:
    """Set by SIGTERM (stop, spot interruption, HPO early stop); training loops poll it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        log.warning("received %s: stopping after the current step and saving a checkpoint",
                    self.signal_name)
        self._event.set()

    def set(self, reason: str = "requested") -> None:
        self.signal_name = reason
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    meta: dict[str, Any]


class CheckpointStore:
    """Numbered checkpoint files plus a JSON sidecar each."""

    def __init__(self, folder: Path, key: str, keep: int = KEEP) -> None:
        self.folder = folder
        self.key = key
        self.keep = keep

    def save(self, step: int, payload: bytes, suffix: str, meta: dict[str, Any] | None = None) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"ckpt-{step:08d}.{suffix}"
        tmp = target.with_name("." + target.name + ".tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, target)
        info = {"step": step, "key": self.key, **(meta or {})}
        sidecar = target.with_name(target.name + ".json")
        tmp_meta = sidecar.with_name("." + sidecar.name + ".tmp")
        tmp_meta.write_text(json.dumps(info), encoding="utf-8")
        os.replace(tmp_meta, sidecar)
        self._prune()
        return target

    def _entries(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        out = []
        for entry in self.folder.iterdir():
            match = _NAME.match(entry.name)
            if match and not Path(str(entry) + ".sagemaker-uploading").exists():
                out.append((int(match.group(1)), entry))
        return sorted(out)

    def _prune(self) -> None:
        entries = self._entries()
        for _, path in entries[: max(0, len(entries) - self.keep)]:
            for victim in (path, path.with_name(path.name + ".json")):
                victim.unlink(missing_ok=True)

    def latest(self) -> Checkpoint | None:
        """The newest complete checkpoint of this job, or None."""
        for step, path in reversed(self._entries()):
            sidecar = path.with_name(path.name + ".json")
            try:
                meta = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if meta.get("key") != self.key:
                log.warning("ignoring checkpoint %s: it belongs to a different job configuration",
                            path.name)
                continue
            return Checkpoint(path, step, meta)
        return None
