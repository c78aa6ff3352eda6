"""Request decoding and response encoding for /invocations; no HTTP objects in here.

Content types are parsed with their parameters (``text/csv; charset=utf-8`` is text/csv),
Accept headers are negotiated as RFC 9110 lists with q-values, and every problem with a
body becomes a ServiceError naming it (415, 406, 400).
"""

from __future__ import annotations

import io
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import pandas as pd

from container.mediatypes import ALIASES, CSV, DECODABLE, ENCODABLE, JSON, JSONLINES
from container.values import is_number
from inference.errors import BadInput, NotAcceptable, UnsupportedMediaType


def _choices(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def parse_media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """'Text/CSV; charset=UTF-8' -> ('text/csv', {'charset': 'utf-8'})."""
    if not header:
        return "", {}
    main, *rest = header.split(";")
    params = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"').lower()
    return main.strip().lower(), params


def request_type(header: str | None, body: bytes) -> tuple[str, str]:
    """Canonical request media type and charset; 415 for types we cannot read."""
    known = _request_type(header) if header else None
    if known is not None:
        return known
    # No Content-Type: sniff rather than guess one format for everybody.
    head = body.lstrip()[:1]
    sniffed = _request_type(JSON if head in (b"{", b"[") else CSV)
    assert sniffed is not None
    return sniffed


# A service sees a handful of distinct headers, each parsed once (the caches are bounded).
@lru_cache(maxsize=256)
def _request_type(header: str) -> tuple[str, str] | None:
    """None for a header that names no type (then the body is sniffed)."""
    mtype, params = parse_media_type(header)
    if not mtype:
        return None
    canonical = ALIASES.get(mtype)
    if canonical is None or canonical not in DECODABLE:
        raise UnsupportedMediaType(
            f"Content-Type '{header}' is not supported; send {_choices(DECODABLE)}",
            details={"supported": list(DECODABLE)},
        )
    charset = params.get("charset", "utf-8")
    if charset not in {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1"}:
        raise UnsupportedMediaType(f"charset '{charset}' is not supported; send UTF-8")
    return canonical, charset


def negotiate(accept: str | None, default: str) -> str:
    """The response type for an Accept header; 406 when nothing acceptable is offered."""
    if not accept or not accept.strip():
        return default
    return _negotiate(accept, default)


@lru_cache(maxsize=256)
def _negotiate(accept: str, default: str) -> str:
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept.split(",")):
        mtype, params = parse_media_type(item)
        if not mtype:
            continue
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if q <= 0:
            continue
        ranked.append((-q, position, mtype))
    for _, _, mtype in sorted(ranked):
        if mtype in ("*/*", "*"):
            return default
        if mtype == "application/*":
            return default if default.startswith("application/") else JSON
        if mtype == "text/*":
            return CSV
        if mtype in ALIASES and ALIASES[mtype] in ENCODABLE:
            return ALIASES[mtype]
    raise NotAcceptable(
        f"Accept '{accept}' names no type this endpoint produces; ask for {_choices(ENCODABLE)}",
        details={"supported": list(ENCODABLE)},
    )


# --------------------------------------------------------------------------- decoding
class Inputs:
    """Decoded request rows: named records (a table) or unnamed numeric rows (a matrix).

    JSON records stay a list of dicts (``records``) until something asks for the table: a
    model that reads a few records directly spares building a DataFrame for each request.
    """

    __slots__ = ("_table", "matrix", "raw")

    def __init__(self, table: pd.DataFrame | None = None, matrix: np.ndarray | None = None,
                 raw: list[Any] | None = None) -> None:
        self._table = table
        self.matrix = matrix
        self.raw: list[Any] = raw if raw is not None else []

    @property
    def table(self) -> pd.DataFrame | None:
        if self._table is None and self.raw and self.matrix is None:
            self._table = pd.DataFrame.from_records(self.raw)
        return self._table

    @table.setter
    def table(self, value: pd.DataFrame | None) -> None:
        self._table = value

    @property
    def records(self) -> list[dict[str, Any]] | None:
        """The JSON records as sent, when the rows came as records."""
        return self.raw if self.raw and self.matrix is None else None

    @property
    def n_rows(self) -> int:
        if self._table is not None:
            return len(self._table)
        if self.matrix is not None:
            return int(self.matrix.shape[0])
        return len(self.raw)


def _text(body: bytes, charset: str) -> str:
    # utf-8-sig: a leading byte-order mark (Windows clients send one) is not part of the data.
    try:
        return body.decode("utf-8-sig" if charset in {"utf-8", "utf8", "us-ascii", "ascii"} else "latin-1")
    except UnicodeDecodeError as exc:
        raise BadInput(f"Body is not valid UTF-8 (byte {exc.start}); send UTF-8 text") from None


# The one rule for numbers a model reads as features, on every door (README, "Numbers in requests"):
# NaN, null and an empty CSV field are a missing value; an infinity (Infinity, inf, or a literal
# beyond float64 such as 1e400) or a finite number beyond float32 (the models' input type) is a 400.
TOO_LARGE = "A number in the body is beyond the range of 32-bit floats (about 3.4e38); send smaller values"
NOT_FINITE = ("A number in the body is not finite (Infinity, or a literal beyond 64-bit floats such as "
              "1e400); send finite numbers, with null, NaN or an empty CSV field for a missing value")


def finite(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` of features, after a 400 for an infinity in it (NOT_FINITE)."""
    if matrix.size and matrix.dtype.kind == "f" and np.isinf(matrix).any():
        raise BadInput(NOT_FINITE)
    return matrix


def decode(body: bytes, media_type: str, charset: str = "utf-8",
           scalar_fields: frozenset[str] = frozenset()) -> Inputs:
    """``scalar_fields``: the model's single-valued fields (see ``decode_json``)."""
    if media_type == CSV:
        # A cast to float32 that overflows is the client's number, not our error (found by the property run).
        with np.errstate(over="raise"):
            try:
                inputs = decode_csv(_text(body, charset), body if body.isascii() else None)
            except FloatingPointError:
                raise BadInput(TOO_LARGE) from None
        if inputs.matrix is not None:
            finite(inputs.matrix)
        return inputs
    # JSON's rows of numbers are cast by _float32, which says the same; records are not cast here.
    if media_type == JSON:
        return decode_json(_text(body, charset), scalar_fields)
    if media_type == JSONLINES:
        return decode_jsonlines(_text(body, charset))
    raise UnsupportedMediaType(f"Content-Type '{media_type}' is not supported")


def _float32(rows: Any) -> np.ndarray:
    """``np.asarray(rows, dtype=float32)``; a number beyond float32's range is a 400 naming it."""
    with np.errstate(over="raise"):
        try:
            return finite(np.asarray(rows, dtype=np.float32))
        except (FloatingPointError, OverflowError):  # OverflowError: an integer beyond float64
            raise BadInput(TOO_LARGE) from None


def decode_csv(text: str, ascii_body: bytes | None = None) -> Inputs:
    """Rows of a CSV body; ``ascii_body`` (the same text as bytes) spares pandas a re-encode."""
    text = text.replace("\r\n", "\n").strip("\n")
    if not text.strip():
        return Inputs(matrix=np.empty((0, 0), dtype=np.float32))
    newline = text.find("\n")
    first = text if newline < 0 else text[:newline]
    fields = first.split(",")
    ncols = len(fields)
    nrows = text.count("\n") + 1
    if nrows <= 8:  # a few rows: str.split beats pandas, and rows of numbers only have no header
        try:
            values = np.array(text.replace("\n", ",").split(","), dtype=np.float32)
        except ValueError:  # text, or an empty field: read below
            values = np.empty(0, dtype=np.float32)
        if values.size == nrows * ncols:
            return Inputs(matrix=values.reshape(nrows, ncols))
    if any(f.strip() and not is_number(f) for f in fields):
        # A header row names the columns (raw device records, or named numeric features).
        try:
            frame = pd.read_csv(io.StringIO(text), skipinitialspace=True)
        except (ValueError, pd.errors.ParserError) as exc:
            raise BadInput(f"CSV body could not be parsed: {exc}") from None
        if frame.empty:
            return Inputs(table=frame)
        return Inputs(table=frame)
    try:
        if nrows > 8:  # pandas' C parser wins on batches (1.5x numpy's); str.split on a few rows
            source = io.BytesIO(ascii_body) if ascii_body is not None else io.StringIO(text)
            parsed = pd.read_csv(source, header=None, engine="c", skip_blank_lines=False).to_numpy()
            # Short rows come back padded with NaN and text as objects: the slow path then
            # names the row (or keeps a genuinely empty field as NaN).
            if parsed.dtype.kind != "f" or np.isnan(parsed).any():
                return Inputs(matrix=_csv_slow(text, ncols))
            # pandas hands back a column-major float64 view; XGBoost walks rows (10% faster).
            matrix = np.ascontiguousarray(parsed, dtype=np.float32)
        else:
            values = np.array(text.replace("\n", ",").split(","), dtype=np.float32)
            if values.size != nrows * ncols:
                return Inputs(matrix=_csv_slow(text, ncols))
            matrix = values.reshape(nrows, ncols)
    except (ValueError, pd.errors.ParserError):
        return Inputs(matrix=_csv_slow(text, ncols))
    if matrix.shape != (nrows, ncols):
        return Inputs(matrix=_csv_slow(text, ncols))
    return Inputs(matrix=matrix)


def _csv_slow(text: str, ncols: int) -> np.ndarray:
    """Row-by-row parse that names the offending row; empty fields become NaN."""
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        parts = line.split(",")
        if len(parts) != ncols:
            raise BadInput(
                f"CSV row {number} has {len(parts)} values but row 1 has {ncols}; every row needs "
                "the same number of columns"
            )
        row = []
        for col, value in enumerate(parts, start=1):
            value = value.strip()
            if value == "" or value.lower() in {"nan", "na", "null"}:
                row.append(np.nan)
                continue
            try:
                row.append(float(value))
            except ValueError:
                raise BadInput(
                    f"CSV row {number}, column {col}: '{value[:40]}' is not a number. Rows without a "
                    "header must be numeric features; send a header row to use named fields"
                ) from None
        out.append(row)
    return np.asarray(out, dtype=np.float32)


def _from_items(items: list[Any], where: str) -> Inputs:
    if not items:
        return Inputs(matrix=np.empty((0, 0), dtype=np.float32))
    if all(isinstance(i, dict) for i in items):
        return Inputs(raw=items)  # the table is built when asked for
    if all(isinstance(i, (list, tuple)) for i in items):
        width = len(items[0])
        for number, row in enumerate(items, start=1):
            if len(row) != width:
                raise BadInput(f"{where}: row {number} has {len(row)} values but row 1 has {width}")
        try:
            matrix = _float32([[np.nan if v is None else v for v in row] for row in items])
        except (TypeError, ValueError):
            raise BadInput(f"{where}: rows given as lists must hold only numbers") from None
        return Inputs(matrix=matrix)
    if all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in items):
        return Inputs(matrix=_float32([items]))
    raise BadInput(f"{where}: every instance must be an object (named fields) or a list of numbers, "
                   "not a mix")


# A \\u escape of a UTF-16 surrogate: json.loads turns a lone one into a str that no encoder can
# write back (the store, pyarrow and the answer all fail on it), so such a document is refused.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _parse_json(text: str | bytes, what: str) -> Any:
    """json.loads, with every way a hostile document can fail it as a BadInput naming the problem.

    Bytes are read as strict UTF-8 (json.loads itself would take UTF-16 and CESU-8's encoded
    surrogates); a string holding a lone surrogate, escaped or not, is refused."""
    if isinstance(text, bytes):
        text = _text(text, "utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                       ) from None
    except RecursionError:
        raise BadInput(f"{what} nests arrays or objects too deeply to read; send flat records") from None
    except ValueError as exc:  # an integer literal beyond Python's int-string limit (4,300 digits)
        raise BadInput(f"{what} holds a number too long to read ({exc}); send numbers of at most "
                       f"{sys.get_int_max_str_digits()} digits") from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(doc, what)
    return doc


def _refuse_lone_surrogates(doc: Any, what: str) -> None:
    """BadInput when a key or string of ``doc`` holds a surrogate that pairs with nothing."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                code = ord(item[exc.start])
                raise BadInput(f"{what} holds a lone UTF-16 surrogate escape (\\u{code:04x}) in the string "
                               f"{item[:40]!r}; escape characters beyond U+FFFF as a pair") from None


def decode_json(text: str, scalar_fields: frozenset[str] = frozenset()) -> Inputs:
    """A JSON body as rows. An object of equal-length lists is a column-oriented table, unless it
    holds one of ``scalar_fields``: then it is a single record whose other fields are lists."""
    if not text.strip():
        return Inputs(matrix=np.empty((0, 0), dtype=np.float32))
    doc = _parse_json(text, "Body")
    if isinstance(doc, list):
        return _from_items(doc, "JSON array")
    if not isinstance(doc, dict):
        raise BadInput("JSON body must be an object or an array of instances")
    for key in ("instances", "inputs", "dataframe_records", "records"):
        if key in doc:
            value = doc[key]
            if isinstance(value, dict):
                return _columns(value, f"'{key}'")
            if not isinstance(value, list):
                raise BadInput(f"'{key}' must be a list of instances")
            return _from_items(value, f"'{key}'")
    split = doc.get("dataframe_split", doc if "columns" in doc and "data" in doc else None)
    if isinstance(split, dict) and "columns" in split and "data" in split:
        cols, data = split["columns"], split["data"]
        if not isinstance(cols, list) or not isinstance(data, list):
            raise BadInput("'columns' and 'data' must both be lists")
        for number, row in enumerate(data, start=1):
            if not isinstance(row, list) or len(row) != len(cols):
                raise BadInput(f"'data' row {number} must be a list of {len(cols)} values")
        return Inputs(table=pd.DataFrame(data, columns=[str(c) for c in cols]))
    if doc and all(isinstance(v, list) for v in doc.values()) and len(
        {len(v) for v in doc.values()}
    ) == 1 and scalar_fields.isdisjoint(doc):
        return _columns(doc, "JSON columns")
    return _from_items([doc], "JSON object")


def _columns(doc: dict[str, Any], where: str) -> Inputs:
    lengths = {len(v) if isinstance(v, list) else -1 for v in doc.values()}
    if -1 in lengths or len(lengths) != 1:
        raise BadInput(f"{where}: column orientation needs every value to be a list of equal length")
    return Inputs(table=pd.DataFrame({str(k): v for k, v in doc.items()}))


def decode_jsonlines(text: str) -> Inputs:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        items.append(_parse_json(line, f"JSON Lines line {number}"))
    return _from_items(items, "JSON Lines")


# --------------------------------------------------------------------------- encoding
@dataclass
class Outputs:
    """Prediction columns, each one value per input row, in display order."""

    columns: dict[str, Sequence[Any]]
    csv_columns: Sequence[str]
    # CSV cells as AWS's built-in containers write selected keys (SAGEMAKER_INFERENCE_OUTPUT):
    # a list as its Python text in quotes ("[0.9, 0.1]", "['F', 'M']"), a float as repr.
    aws_cells: bool = False

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def jsonl(self) -> str:
        """One JSON object per row, built column-wise (bulk results of batch jobs)."""
        if not self.n_rows:
            return ""
        text = pd.DataFrame(self.columns).to_json(orient="records", lines=True, force_ascii=False,
                                                  double_precision=15)
        return text if text.endswith("\n") else text + "\n"

    def rows(self) -> list[dict[str, Any]]:
        names = list(self.columns)
        return [dict(zip(names, values, strict=True)) for values in zip(*self.columns.values(),
                                                                          strict=True)]


def csv_cell(value: Any) -> str:
    """One value as a cell of a CSV answer."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "|".join(csv_cell(v) for v in value)
    text = str(value)
    if "," in text or '"' in text or "\n" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


_SPECIAL = re.compile(r'[,"\n]')


def _csv_cells(column: Sequence[Any]) -> Sequence[str]:
    """``[csv_cell(v) for v in column]``, a column of floats or of plain strings at once (a
    1,000-row answer's cells cost more than its parse otherwise)."""
    kinds = set(map(type, column))
    if kinds == {float}:
        return list(map(_FLOAT_CELL, column))
    if kinds == {str} and not _SPECIAL.search("\0".join(column)):
        return column
    return [csv_cell(v) for v in column]


_FLOAT_CELL = "{:.6g}".format


def aws_cell(value: Any) -> str:
    """One value as AWS's XGBoost container writes it in a CSV answer of selected keys
    (serve_utils._encode_selected_predictions_csv: '"{}"'.format(a list), else str(value)); a quote
    inside is doubled and a string holding a comma quoted, where AWS's text would not be CSV."""
    if isinstance(value, (list, tuple)):
        return '"' + str(list(value)).replace('"', '""') + '"'
    return csv_cell(value) if isinstance(value, str) else str(value)


def _aws_csv(outputs: Outputs) -> bytes:
    cols = [outputs.columns[c] for c in outputs.csv_columns]
    return "".join(",".join(map(aws_cell, row)) + "\n" for row in zip(*cols, strict=True)).encode()


def _json(doc: Any) -> bytes:
    """One JSON document, by orjson (compact: no spaces after ',' and ':'; a float that is not
    finite is null). An integer beyond 64 bits, which orjson refuses, takes json.dumps in the same
    compact spelling: the families answer such ids as strings, so only a plug-in's outputs may."""
    try:
        return orjson.dumps(doc)
    except TypeError:
        return json.dumps(_finite_or_null(doc), ensure_ascii=False, separators=(",", ":")).encode()


def _finite_or_null(value: Any) -> Any:
    """``value`` with each float that is not finite as None, as orjson writes it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def encode(outputs: Outputs, media_type: str, batch: bool = False) -> tuple[bytes, str]:
    """Body and its content type; batch mode writes exactly one line per input row."""
    if media_type == CSV:
        if outputs.aws_cells:
            return _aws_csv(outputs), CSV
        cols = [outputs.columns[c] for c in outputs.csv_columns]
        if cols and all(len(col) == 1 for col in cols):  # one row, the usual answer: no zip, no generator
            return (",".join([csv_cell(col[0]) for col in cols]) + "\n").encode(), CSV
        lines = list(map(",".join, zip(*map(_csv_cells, cols), strict=True)))
        return ("\n".join(lines) + ("\n" if lines else "")).encode(), CSV
    rows = outputs.rows()
    if media_type == JSONLINES or (batch and media_type == JSON):
        return b"".join([_json(r) + b"\n" for r in rows]), JSONLINES
    return _json({"predictions": rows}), JSON


# --------------------------------------------------------------------------- control bodies
def json_object(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """The JSON object of an API request body ({} for an empty body); 415 / 400 otherwise."""
    if not raw.strip():
        return {}
    mtype, _ = parse_media_type(content_type)
    if mtype not in (JSON, ""):
        raise UnsupportedMediaType("Portal requests must be application/json")
    data = _parse_json(raw, "Body")
    if not isinstance(data, dict):
        raise BadInput("The request body must be a JSON object")
    return data
