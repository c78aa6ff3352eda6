"""The one table of media types and file formats the image reads and writes.

Request bodies (/invocations, the portal), response types (Accept), training channels
(ContentType, file names) and batch-job files all look their names up here, so a format
added once is understood everywhere and every error lists the same choices.
"""

from __future__ import annotations

from dataclasses import dataclass

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
PARQUET = "application/x-parquet"


@dataclass(frozen=True)
class MediaType:
    name: str  # canonical name
    aliases: tuple[str, ...]
    decodable: bool  # a request body of this type can be read
    encodable: bool  # a response can be written in this type
    file_format: str  # the file format a training channel or batch file of this type holds


MEDIA_TYPES: tuple[MediaType, ...] = (
    MediaType(CSV, ("application/csv", "text/x-csv"), True, True, "csv"),
    # A training channel declared application/json holds one JSON object per line.
    MediaType(JSON, (), True, True, "jsonl"),
    MediaType(JSONLINES, ("application/x-jsonlines", "application/jsonl", "application/x-ndjson",
                          "application/ndjson"), True, True, "jsonl"),
    MediaType(PARQUET, ("application/parquet",), False, False, "parquet"),
)

# Response types in order of preference when a client accepts several equally.
ENCODABLE = tuple(name for name in (JSON, CSV, JSONLINES)
                  if any(m.name == name and m.encodable for m in MEDIA_TYPES))
DECODABLE = tuple(m.name for m in MEDIA_TYPES if m.decodable)
ALIASES = {alias: m.name for m in MEDIA_TYPES for alias in (m.name, *m.aliases)}


@dataclass(frozen=True)
class FileFormat:
    name: str
    suffixes: tuple[str, ...]  # a trailing .gz is allowed on every format


FILE_FORMATS: tuple[FileFormat, ...] = (
    FileFormat("csv", (".csv", ".tsv", ".txt")),
    FileFormat("jsonl", (".jsonl", ".json", ".ndjson")),
    FileFormat("parquet", (".parquet", ".pq")),
)
FORMAT_NAMES = tuple(f.name for f in FILE_FORMATS)
_BY_SUFFIX = {suffix: f.name for f in FILE_FORMATS for suffix in f.suffixes}


def canonical(media_type: str) -> str | None:
    """'application/x-ndjson' -> 'application/jsonlines'; None for a type not in the table."""
    return ALIASES.get(media_type.strip().lower())


def format_of_media_type(media_type: str) -> str | None:
    """The file format a (training channel) ContentType names: 'text/csv' -> 'csv'."""
    key = media_type.split(";")[0].strip().lower()
    if key in FORMAT_NAMES:  # SageMaker users also write the bare format name
        return key
    name = ALIASES.get(key)
    return next((m.file_format for m in MEDIA_TYPES if m.name == name), None)


def format_of_name(file_name: str) -> str | None:
    """'part-0.jsonl.gz' -> 'jsonl'; None when the name does not say."""
    lowered = file_name.lower().removesuffix(".gz")
    dot = lowered.rfind(".")
    return _BY_SUFFIX.get(lowered[dot:]) if dot >= 0 else None


def encodable_media_type(raw: str) -> str:
    """Settings validation of a response type: the canonical name, or ValueError."""
    name = canonical(raw.split(";")[0])
    if name is None or name not in ENCODABLE:
        raise ValueError(f"must be {', '.join(ENCODABLE[:-1])} or {ENCODABLE[-1]}")
    return name
