"""Reading a channel: its files, their format, CSV headers and the label column.

A channel is a folder of CSV, Parquet or JSON Lines files (gzip allowed), possibly in
sub-folders; names starting with '.' or '_' (hidden files, _SUCCESS markers, the
checkpoint uploader's markers) are skipped. CSV may come with or without a header.
"""

from __future__ import annotations

import collections
import csv
import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from container.mediatypes import format_of_media_type, format_of_name
from container.values import is_number
from training.errors import UserError

MAX_DEPTH = 8


def list_files(root: Path) -> list[Path]:
    """Data files under ``root`` in a stable order, hidden and marker files skipped."""
    if not root.is_dir():
        return []
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith((".", "_")) or entry.name.endswith(".sagemaker-uploading"):
                continue
            if entry.is_dir() and depth < MAX_DEPTH:
                walk(entry, depth + 1)
            elif entry.is_file() and entry.stat().st_size > 0:
                found.append(entry)

    walk(root, 0)
    return found


def detect_format(path: Path, content_type: str | None) -> str:
    """The file's format: its own evidence (magic bytes, extension) first, then ContentType."""
    declared = None
    if content_type:
        declared = format_of_media_type(content_type)
        if declared is None:
            raise UserError(
                f"ContentType '{content_type}' is not supported for training; use text/csv, "
                "application/x-parquet or application/jsonlines"
            )
    head = _read_head(path)
    if head.startswith(b"PAR1"):
        return "parquet"
    by_name = format_of_name(path.name)
    if by_name is not None:
        return by_name
    if declared:
        return declared
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    return "csv"


def _read_head(path: Path, size: int = 4096) -> bytes:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        return bytes(fh.read(size))


def csv_has_header(sample: str, known_columns: frozenset[str] = frozenset()) -> bool:
    """Decide whether the first CSV line is a header.

    A header names columns: none of its fields is a number, and either some column is
    numeric below it, or it names a column the algorithm knows (label, phone_brand...).
    """
    rows = list(csv.reader(io.StringIO(sample)))
    rows = [r for r in rows if r]
    if not rows:
        return False
    first = rows[0]
    if any(is_number(f) for f in first if f.strip()):
        return False
    if any(f.strip().lower() in known_columns for f in first):
        return True
    body = rows[1:6]
    return any(any(col < len(r) and is_number(r[col]) for r in body) for col in range(len(first)))


@dataclass
class ChannelData:
    frame: pd.DataFrame
    files: list[Path]
    fingerprint: str
    has_header: bool


def read_channel(
    root: Path,
    channel: str,
    content_type: str | None,
    header: str = "auto",
    known_columns: frozenset[str] = frozenset(),
    required: bool = True,
    delimiter: str = "auto",
) -> ChannelData | None:
    """All rows of a channel as one DataFrame (columns named, or numbered without a header)."""
    files = list_files(root)
    if not files:
        if required:
            raise UserError(
                f"Channel '{channel}' is empty: no data files under {root} "
                "(names starting with '.' or '_' are skipped). Upload CSV, Parquet or JSON Lines files."
            )
        return None
    frames: list[pd.DataFrame] = []
    digest = hashlib.sha256()
    header_seen: bool | None = None
    for path in files:
        fmt = format_of_name(path.name) or "data"  # for messages until the file's head is read
        digest.update(path.name.encode())
        digest.update(str(path.stat().st_size).encode())
        try:
            fmt = detect_format(path, content_type)  # reads the head: a truncated gzip fails here
            frame, has_header = _read_file(path, fmt, header, known_columns, delimiter)
            _check_fields(frame, path.name, channel)
        except UserError:
            raise
        except UnicodeDecodeError as exc:
            raise UserError(f"{fmt} file {path.name} in channel '{channel}' is not valid UTF-8 (byte "
                            f"{exc.start} of a block); save it as UTF-8") from None
        except (EOFError, gzip.BadGzipFile) as exc:
            raise UserError(f"Cannot read {fmt} file {path.name} in channel '{channel}': the gzip stream is "
                            f"truncated or corrupt ({exc}); upload it again") from None
        except Exception as exc:  # pandas/pyarrow raise a zoo of types for bad files
            raise UserError(f"Cannot read {fmt} file {path.name} in channel '{channel}': {exc}") from None
        if header_seen is not None and fmt == "csv" and has_header != header_seen:
            raise UserError(
                f"Channel '{channel}': some CSV files have a header row and some do not "
                f"({path.name}); set hyperparameter csv_header to 'true' or 'false'"
            )
        if fmt == "csv":
            header_seen = has_header
        frames.append(frame)
    columns = {tuple(map(str, f.columns)) for f in frames}
    if len(columns) > 1:
        raise UserError(f"Channel '{channel}': files disagree on their columns: {sorted(columns)[:2]}")
    data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if data.empty:
        raise UserError(f"Channel '{channel}' has files but no rows under {root}")
    for path in files:
        with open(path, "rb") as fh:
            digest.update(hashlib.sha256(fh.read()).digest())
    has_header = bool(header_seen) if header_seen is not None else True
    return ChannelData(data, files, digest.hexdigest(), has_header)


MAX_FIELD_CHARS = 1_000_000


def _check_fields(frame: pd.DataFrame, name: str, channel: str) -> None:
    """A text field of more than a million characters is a broken file, not a feature."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values):
            continue
        try:
            lengths = values.str.len()  # vectorised: this runs over every text cell of every channel
        except AttributeError:  # an object column without any text (lists, numbers)
            continue
        if lengths.notna().any() and float(lengths.max()) > MAX_FIELD_CHARS:
            row = int(lengths.to_numpy(dtype=float, na_value=0.0).argmax()) + 1
            raise UserError(f"{name} in channel '{channel}': column '{column}' of data row {row} is longer "
                            f"than {MAX_FIELD_CHARS:,} characters; check the file's quoting and line ends")


def sniff_delimiter(sample: str) -> str:
    """',' unless the first line is clearly tab-, semicolon- or pipe-separated."""
    first = sample.split("\n", 1)[0]
    for sep in ("\t", ";", "|"):
        if sep in first and "," not in first:
            return sep
    return ","


def _read_file(
    path: Path, fmt: str, header: str, known_columns: frozenset[str], delimiter: str = "auto"
) -> tuple[pd.DataFrame, bool]:
    if fmt == "parquet":
        return pd.read_parquet(path), True
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=False, compression="infer"), True
    sample = _read_head(path, 65536).decode("utf-8", errors="replace")
    sep = sniff_delimiter(sample) if delimiter == "auto" else delimiter
    probe = sample.replace(sep, ",") if sep != "," else sample
    has_header = csv_has_header(probe, known_columns) if header == "auto" else header == "true"
    if has_header:
        first = next(csv.reader(io.StringIO(sample.split("\n", 1)[0]), delimiter=sep), [])
        duplicated = sorted(f for f, n in collections.Counter(first).items() if n > 1)
        if duplicated:
            raise UserError(f"{path.name} has duplicate column name(s): {', '.join(duplicated[:10])}; every "
                            "column needs a name of its own")
    frame = pd.read_csv(
        path,
        sep=sep,
        header=0 if has_header else None,
        compression="infer",
        keep_default_na=True,
        low_memory=False,
    )
    if not has_header:
        frame.columns = [str(i) for i in range(frame.shape[1])]
    return frame, has_header


def split_label(frame: pd.DataFrame, label: Any, channel: str) -> tuple[pd.DataFrame, pd.Series]:
    """Take the label column out by name or by position (an int or a digit string)."""
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if isinstance(label, str) and label in columns:
        name = label
    elif isinstance(label, int) or (isinstance(label, str) and label.lstrip("-").isdigit()):
        index = int(label)
        if not -len(columns) <= index < len(columns):
            raise UserError(
                f"Label column index {index} is out of range: channel '{channel}' has "
                f"{len(columns)} columns"
            )
        name = columns[index]
    else:
        raise UserError(
            f"Label column '{label}' not found in channel '{channel}'; columns are: "
            f"{', '.join(columns[:20])}{' ...' if len(columns) > 20 else ''}. "
            "Set the hyperparameter 'label' to a column name or a 0-based index."
        )
    y = frame[name]
    if y.isna().any():
        missing = int(y.isna().sum())
        raise UserError(f"Label column '{name}' in channel '{channel}' has {missing} empty values")
    return frame.drop(columns=[name]), y
