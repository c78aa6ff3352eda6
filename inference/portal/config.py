"""The portal's configuration: a view of Settings (no defaults of its own, so none can disagree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from container.settings import Settings


@dataclass(frozen=True)
class PortalConfig:
    max_inline_rows: int
    chunk_rows: int
    lease_seconds: float
    max_rows_per_second: float
    allowed_schemes: tuple[str, ...]
    allowed_roots: tuple[Path, ...]
    workdir: Path
    spark_master: str = ""
    spark_submit_args: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> PortalConfig:
        return cls(max_inline_rows=settings.max_inline_rows, chunk_rows=settings.job_chunk_rows,
                   lease_seconds=settings.lease_seconds,
                   max_rows_per_second=settings.job_max_rows_per_second,
                   allowed_schemes=settings.allowed_schemes,
                   # resolved once: a root given through a symlink still contains what lies in it
                   allowed_roots=tuple(Path(p).resolve() for p in settings.resolved_allowed_roots),
                   workdir=Path(settings.resolved_data_dir) / "work",
                   spark_master=settings.spark_master, spark_submit_args=settings.spark_submit_args)
