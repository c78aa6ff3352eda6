"""Where batch inputs come from and results go: local paths, file:// and s3:// URIs.

Inputs stream in fixed-size chunks (CSV, JSON Lines, Parquet), so a job of millions of rows
runs in bounded memory; a resumed job skips the chunks already committed. Paths must lie
under the allowed roots and URIs use an allowed scheme.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from container.mediatypes import FORMAT_NAMES, format_of_name
from inference.errors import BadInput, Forbidden
from modelformat.arrowtypes import arrow_list_type


def parse_location(location: Any, allowed_schemes: tuple[str, ...], allowed_roots: tuple[Path, ...]
                   ) -> tuple[str, str]:
    """('file', absolute path) or ('s3', uri), after the allow-list checks."""
    if not isinstance(location, str) or not location.strip():
        raise BadInput("location must be a non-empty string")
    if "\x00" in location:
        raise BadInput("location must not contain a NUL character")
    parsed = urlparse(location)
    scheme = parsed.scheme or "file"
    if scheme not in allowed_schemes:
        raise Forbidden(f"URI scheme '{scheme}' is not allowed; allowed: {', '.join(allowed_schemes)}")
    if scheme == "s3":
        if not parsed.netloc or not parsed.path.strip("/"):
            raise BadInput(f"s3 location must be s3://bucket/key, got {location!r}")
        return "s3", location
    path = Path(parsed.path if parsed.scheme == "file" else location).resolve()
    if not any(path == root or root in path.parents for root in allowed_roots):
        roots = ", ".join(str(r) for r in allowed_roots) or "(none configured)"
        raise Forbidden(f"Path {path} is outside the allowed roots: {roots}")
    return "file", str(path)


def detect_format(name: str, declared: str | None) -> str:
    choices = ", ".join(FORMAT_NAMES)
    if declared:
        fmt = declared.lower()
        if fmt not in FORMAT_NAMES:
            raise BadInput(f"format must be {choices}")
        return fmt
    found = format_of_name(name)
    if found is None:
        raise BadInput(f"Cannot tell the format of {name!r}; give 'format': {choices}")
    return found


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def local_copy(kind: str, where: str, workdir: Path) -> Path:
    """A local file to stream from (s3 objects are downloaded once, to disk, not memory)."""
    if kind == "file":
        path = Path(where)
        if not path.is_file():
            raise BadInput(f"Input file {where} does not exist")
        return path
    parsed = urlparse(where)
    workdir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=workdir, suffix="-" + Path(parsed.path).name)
    os.close(fd)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _s3_client().download_file(parsed.netloc, parsed.path.lstrip("/"), tmp)
    except (ClientError, BotoCoreError) as exc:
        os.unlink(tmp)
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        reason = "no such object" if code in {"404", "NoSuchKey", "NoSuchBucket"} else str(exc)
        raise BadInput(f"Cannot read input {where}: {reason}") from None
    return Path(tmp)


def _arrow_lists(kind: Any) -> pd.ArrowDtype | None:
    """``types_mapper``: list columns of plain values stay Arrow arrays in the DataFrame.

    Converting them the default way builds a numpy array per row, which cost more than the
    model itself; feature pipelines flatten such columns in Arrow. Lists of objects
    (``events``) convert as usual.
    """
    return pd.ArrowDtype(kind) if arrow_list_type(kind) else None


def to_pandas(table: Any) -> pd.DataFrame:
    """An Arrow table or record batch as the DataFrame a predictor reads."""
    return table.to_pandas(types_mapper=_arrow_lists).reset_index(drop=True)


def chunks(path: Path, fmt: str, chunk_rows: int, skip_chunks: int = 0) -> Iterator[pd.DataFrame]:
    """DataFrames of at most ``chunk_rows`` rows, after skipping ``skip_chunks`` chunks.

    The file stays open only while the generator runs; closing it (or an error) closes the file.
    """
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as pf:
            for number, batch in enumerate(pf.iter_batches(batch_size=chunk_rows)):
                if number >= skip_chunks:
                    yield to_pandas(batch)
        return
    if fmt == "jsonl" and not str(path).endswith(".gz"):
        yield from _jsonl_chunks(path, chunk_rows, skip_chunks)
        return
    reader: Any
    if fmt == "csv":
        reader = pd.read_csv(path, chunksize=chunk_rows, compression="infer")
    else:
        reader = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False, compression="infer")
    with reader:
        for number, frame in enumerate(reader):
            if number >= skip_chunks:
                yield frame.reset_index(drop=True)


def _jsonl_chunks(path: Path, chunk_rows: int, skip_chunks: int) -> Iterator[pd.DataFrame]:
    """JSON Lines through pyarrow's streaming reader (about 6x pandas'), re-cut to exact chunks.

    4 MB blocks: pyarrow's parse buffers grow with the block (16 MB blocks cost ~500 MB of RSS).

    pyarrow fixes column types from the first block; a file whose later lines disagree (a field
    that is a number here and text there) is read on from the same chunk line by line instead.
    """
    import pyarrow as pa
    import pyarrow.json as pj

    emitted = skip_chunks
    read_options = pj.ReadOptions(block_size=4 << 20, use_threads=False)
    try:
        # pyarrow turns timestamp-looking text into timestamps; records must reach the model (and
        # the recorded input hashes) as they were written, so those fields are declared text.
        with pa.OSFile(str(path), "rb") as source:  # a plain file: a memory map would count in RSS
            inferred = pj.open_json(source, read_options=read_options).schema
        textual = pa.schema([pa.field(f.name, _as_text(f.type)) for f in inferred])
        parse_options = pj.ParseOptions(explicit_schema=textual) if textual != inferred else None
        with pa.OSFile(str(path), "rb") as source:
            reader = pj.open_json(source, read_options=read_options, parse_options=parse_options)
            pending: list[pa.RecordBatch] = []
            buffered = seen = 0
            for batch in reader:
                pending.append(batch)
                buffered += batch.num_rows
                while buffered >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    head, tail = table.slice(0, chunk_rows), table.slice(chunk_rows)
                    if seen >= skip_chunks:
                        yield to_pandas(head)
                        emitted = seen + 1
                    seen += 1
                    pending, buffered = tail.to_batches(), tail.num_rows
            if buffered and seen >= skip_chunks:
                yield to_pandas(pa.Table.from_batches(pending))
        return
    except pa.ArrowInvalid:
        pass
    yield from _jsonl_python(path, chunk_rows, emitted)


def _as_text(kind: Any) -> Any:
    import pyarrow as pa

    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind):
        return pa.string()
    if pa.types.is_list(kind):
        return pa.list_(_as_text(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _as_text(f.type)) for f in kind])
    return kind


def _jsonl_python(path: Path, chunk_rows: int, skip_chunks: int) -> Iterator[pd.DataFrame]:
    with path.open("rb") as handle:
        number = 0
        while True:
            lines = list(itertools.islice(handle, chunk_rows))
            if not lines:
                return
            if number >= skip_chunks:
                records = []
                for offset, line in enumerate(lines):
                    if not line.strip():
                        continue
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        raise BadInput(f"{path.name}: line {number * chunk_rows + offset + 1} "
                                       "is not valid JSON") from None
                yield pd.DataFrame.from_records(records)
            number += 1


def write_part(kind: str, where: str, part: int, body: str) -> str:
    """Write one results part (JSON Lines); rewriting the same part is idempotent."""
    name = f"part-{part:06d}.jsonl"
    if kind == "file":
        folder = Path(where)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.tmp"
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, folder / name)
        return str(folder / name)
    parsed = urlparse(where)
    key = parsed.path.strip("/") + "/" + name
    _s3_client().put_object(Bucket=parsed.netloc, Key=key, Body=body.encode())
    return f"s3://{parsed.netloc}/{key}"
