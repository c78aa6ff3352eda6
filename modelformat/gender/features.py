"""The gender feature pipeline: raw device records in, a sparse feature matrix out.

A device record holds a device id, phone brand and model, app usage and events:

=================  =========================================================================
field              form (JSON: lists; CSV: values joined with '|', or spaces for app ids)
=================  =========================================================================
device_id          any id; echoed back, never a feature
phone_brand        brand name ("Xiaomi", "华为")
device_model       model name ("MI 3")
installed_apps     app ids installed on the device
active_apps        app ids seen active
app_categories     category labels of the device's apps
event_timestamps   ISO timestamps ("2016-05-01 10:22:05") or epoch seconds
event_lats/lons    event coordinates, aligned with the timestamps; 0,0 means unknown
events             alternative to the three above: [{"timestamp", "latitude", "longitude"}]
=================  =========================================================================

The pipeline is fitted in `train` and saved as JSON beside the model, so `serve` turns the
same records into the same features: no training/serving skew, and no pickles. The work is
vectorised with pandas/numpy over whole frames (batch jobs run millions of records); list
columns that arrive as Arrow arrays (batch jobs' Parquet and JSON Lines) are flattened, looked
up and parsed in Arrow, with no Python object per value, and give the same features.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from modelformat.arrowtypes import arrow_lists
from modelformat.errors import DataError

RAW_FIELDS = (
    "device_id", "phone_brand", "device_model", "installed_apps", "active_apps",
    "app_categories", "event_timestamps", "event_lats", "event_lons", "events",
)
LIST_FIELDS = ("installed_apps", "active_apps", "app_categories",
               "event_timestamps", "event_lats", "event_lons")
SIGNATURE_FIELDS = frozenset({"phone_brand", "device_model", "installed_apps", "active_apps",
                              "app_categories", "events", "event_timestamps"})
OTHER = "__other__"

DENSE_NAMES = (
    ["n_events_log"]
    + [f"hour_{h:02d}" for h in range(24)]
    + ["weekend_share", "geo_share", "lat_mean", "lon_mean", "lat_std", "lon_std",
       "n_places_log", "n_installed_log", "n_active_log", "active_ratio", "n_categories_log"]
)


def is_raw_frame(columns: Iterable[Any]) -> bool:
    """True when a table's columns look like device records rather than numeric features."""
    return bool(SIGNATURE_FIELDS & {str(c) for c in columns})


def _to_list(value: Any, numeric_split: bool) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    if isinstance(value, float) and math.isnan(value):
        return []
    if isinstance(value, (int, float)):
        return [value]
    text = str(value).strip()
    if not text:
        return []
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return parsed
        except ValueError:
            pass
    for sep in ("|", ";"):
        if sep in text:
            return [t.strip() for t in text.split(sep) if t.strip()]
    return text.split() if numeric_split else [text]


Values = Any  # np.ndarray of objects, or a pyarrow Array of strings/integers/floats


def _explode(series: pd.Series, numeric_split: bool = True) -> tuple[np.ndarray, Values]:
    """(row index, value) pairs for a list-valued column."""
    if arrow_lists(series.dtype):
        import pyarrow as pa
        import pyarrow.compute as pc

        arrow = pa.array(series.array)  # the column's own buffers, via __arrow_array__
        return np.asarray(pc.list_parent_indices(arrow), dtype=np.int64), pc.list_flatten(arrow)
    items = series.tolist()
    n = len(items)
    if all(type(v) is list for v in items):  # JSON records: lists already
        lists: list[Any] = items
    elif n and all(isinstance(v, np.ndarray) for v in items):  # Parquet list columns
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=n)
        rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
        if rows.size == 0:
            return rows, np.array([], dtype=object)
        return rows, np.concatenate(items).astype(object)
    else:  # CSV cells ("a|b", "[...]"), scalars, None: parse one by one
        lists = [_to_list(v, numeric_split) for v in items]
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=n)
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    if rows.size == 0:
        return rows, np.array([], dtype=object)
    values = np.fromiter(itertools.chain.from_iterable(lists), dtype=object, count=int(lengths.sum()))
    return rows, values


def _is_arrow(values: Values) -> bool:
    return not isinstance(values, np.ndarray)


def _objects(values: Values) -> np.ndarray:
    """Values as the numpy object array the pandas-side code reads (Arrow nulls become None)."""
    if _is_arrow(values):
        return np.asarray(values.to_pylist(), dtype=object) if len(values) else np.array([], dtype=object)
    return values


def _arrow_text(values: Values) -> Any:
    """An Arrow string array equal to ``str(value)`` per value, or None where that could differ."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(values.type):
        return values
    if pa.types.is_large_string(values.type) or pa.types.is_integer(values.type):
        return pc.cast(values, pa.string())  # str(int) and Arrow's integer text agree
    return None  # floats: Python writes 1.0, Arrow 1


_STAMP_FORMAT = "%Y-%m-%d %H:%M:%S"  # TalkingData's layout: pandas' fast path
_TZ_SUFFIX = r"(?:Z|[+-]\d{2}:?\d{2})$"


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_EPOCH_LIMIT = 9.2e9  # pandas' nanosecond datetimes end in 2262: the same bound for both paths
_SMALL = 256  # below this many timestamps pandas' per-call overhead outweighs its vector speed


def _parse_one(value: Any) -> tuple[dt.datetime | None, bool]:
    """One timestamp as _parse_times reads it, and whether this path could decide (else: pandas)."""
    if _is_missing(value):
        return None, True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if type(value) is int and abs(value) > _EPOCH_LIMIT:
            return None, True  # float() may overflow: unreadable, as _parse_times has it
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _NUMBER.match(text):
            try:
                return dt.datetime.fromisoformat(text).replace(tzinfo=None), True  # wall clock, as written
            except ValueError:
                return None, False
        seconds = float(text)
    else:
        return None, False
    if not math.isfinite(seconds) or abs(seconds) > _EPOCH_LIMIT:
        return None, True
    return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds), True


def _hours_and_weekdays(values: Values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hour, weekday, readable) per timestamp; a few are parsed in Python, many with pandas."""
    if _is_arrow(values):
        if len(values) > _SMALL and (text := _arrow_text(values)) is not None:
            return _arrow_hours_and_weekdays(text)
        values = _objects(values)
    if values.size <= _SMALL:
        results = [_parse_one(v) for v in values]
        if all(decided for _, decided in results):
            parsed = [p for p, _ in results]
            ok = np.array([p is not None for p in parsed], dtype=bool)
            hour = np.array([p.hour if p else 0 for p in parsed], dtype=np.int64)
            weekday = np.array([p.weekday() if p else 0 for p in parsed], dtype=np.int64)
            return hour, weekday, ok
    stamps = _parse_times(values)
    ok = stamps.notna().to_numpy()
    return (stamps.dt.hour.to_numpy(na_value=0).astype(np.int64),
            stamps.dt.day_of_week.to_numpy(na_value=0).astype(np.int64), ok)


def _arrow_hours_and_weekdays(text: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrow's strptime for the common layout; whatever it cannot read goes the pandas way."""
    import pyarrow as pa
    import pyarrow.compute as pc

    stamps = pc.strptime(text, format=_STAMP_FORMAT, unit="s", error_is_null=True)
    # copies: Arrow's zero-copy views are read-only, and these are filled in below
    ok = np.asarray(pc.is_valid(stamps), dtype=bool).copy()
    hour = np.asarray(pc.fill_null(pc.hour(stamps), 0), dtype=np.int64).copy()
    weekday = np.asarray(pc.fill_null(pc.day_of_week(stamps), 0), dtype=np.int64).copy()  # Monday = 0
    retry = np.flatnonzero(~ok & np.asarray(pc.is_valid(text), dtype=bool))
    if retry.size:
        rest = np.asarray(text.take(pa.array(retry)).to_pylist(), dtype=object)
        r_hour, r_weekday, r_ok = _hours_and_weekdays(rest)
        hour[retry], weekday[retry], ok[retry] = r_hour, r_weekday, r_ok
    hour[~ok] = 0
    weekday[~ok] = 0
    return hour, weekday, ok


def _us(stamps: pd.Series) -> pd.Series:
    # pandas 3 picks a unit per parse (a year-3000 stamp comes back in seconds, where nanoseconds
    # overflow): one unit that holds every year the Python path reads, before series are merged
    return stamps.dt.as_unit("us")


def _epoch_number(value: Any) -> Any:
    """A value _parse_times reads as epoch seconds, or None: text is read as text, and an integer
    beyond _EPOCH_LIMIT is unreadable (pandas refuses a whole column holding one beyond float64)."""
    if isinstance(value, str) or (type(value) is int and abs(value) > _EPOCH_LIMIT):
        return None
    return value


def _parse_times(values: np.ndarray) -> pd.Series:
    """Wall-clock datetimes (NaT where unreadable) from text or epoch seconds, freely mixed.

    A zone suffix is dropped rather than converted: hour-of-day features describe the user's
    local day, as the timestamp was written.
    """
    raw = pd.Series(values, dtype=object)
    stamps = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]")
    is_num = pd.Series(False, index=raw.index)
    if set(map(type, values)) - {str}:
        num = pd.to_numeric(raw.map(_epoch_number), errors="coerce")
        num = num.where(num.abs() <= _EPOCH_LIMIT)  # beyond pandas' datetimes: unreadable, not an error
        is_num = num.notna()
        if is_num.any():
            stamps[is_num] = _us(pd.to_datetime(num[is_num], unit="s", errors="coerce"))
    rest = ~is_num
    if rest.any():
        text = raw[rest].astype(str)
        parsed = _us(pd.to_datetime(text, format=_STAMP_FORMAT, errors="coerce"))
        bad = parsed.isna()
        if bad.any():
            retry = text[bad].str.strip()
            num = pd.to_numeric(retry, errors="coerce")
            num = num.where(num.abs() <= _EPOCH_LIMIT)
            wall = retry.str.replace(_TZ_SUFFIX, "", regex=True)
            try:
                from_text = pd.to_datetime(wall, format="mixed", errors="coerce")
            except ValueError:  # zones written some other way: fall back to UTC
                from_text = pd.to_datetime(wall, format="mixed", errors="coerce", utc=True)
                from_text = from_text.dt.tz_localize(None)
            from_num = _us(pd.to_datetime(num, unit="s", errors="coerce"))
            parsed[bad] = from_num.where(num.notna(), _us(from_text))
        stamps[rest] = parsed
    return stamps


class _ListColumns(Protocol):
    """(row, value) pairs of a list column, however the rows arrived."""

    def __getitem__(self, column: str) -> tuple[np.ndarray, Values]: ...

    def counts(self, column: str, n: int) -> np.ndarray:
        """How many values each of the ``n`` rows has in ``column`` (int64)."""
        ...


class _Lists:
    """Each list column of one frame exploded once, however many features read it."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._cache: dict[str, tuple[np.ndarray, Values]] = {}

    def __getitem__(self, column: str) -> tuple[np.ndarray, Values]:
        if column not in self._cache:
            rows, values = _explode(self.frame[column], numeric_split=column not in TEXT_LISTS)
            self._cache[column] = rows, _scalar_items(column, rows, values)
        return self._cache[column]

    def counts(self, column: str, n: int) -> np.ndarray:
        return np.bincount(self[column][0], minlength=n)


TEXT_LISTS = frozenset({"event_timestamps", "app_categories"})


class _RecordLists:
    """What _Lists gives for a frame of JSON records, read from the records themselves."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        present = set().union(*records)
        self._derived = {c: k for c, k in EVENT_KEYS if c not in present and "events" in present}
        self._cache: dict[str, tuple[np.ndarray, Values]] = {}
        self._lists: dict[str, list[list[Any]]] = {}

    def lists(self, column: str) -> list[list[Any]]:
        """Each record's list of ``column``, as the arrays of ``self[column]`` hold it."""
        if column not in self._lists:
            split = column not in TEXT_LISTS
            keys = self._derived.get(column)
            lists = [_pick(r.get("events"), keys) if keys else
                     (v if type(v := r.get(column)) is list else _to_list(v, split)) for r in self.records]
            kinds = set(map(type, itertools.chain.from_iterable(lists)))
            if any(issubclass(kind, _NESTED) for kind in kinds):
                number = next(i for i, items in enumerate(lists, start=1)
                              if any(isinstance(v, _NESTED) for v in items))
                items = lists[number - 1]
                _scalar_items(column, np.full(len(items), number - 1),
                              np.fromiter(items, dtype=object, count=len(items)))
            self._lists[column] = lists
        return self._lists[column]

    def __getitem__(self, column: str) -> tuple[np.ndarray, Values]:
        if column not in self._cache:
            lists = self.lists(column)
            lengths = [len(v) for v in lists]
            rows = np.repeat(np.arange(len(lists), dtype=np.int64), lengths)
            values = np.fromiter(itertools.chain.from_iterable(lists), dtype=object, count=sum(lengths))
            self._cache[column] = rows, values
        return self._cache[column]

    def counts(self, column: str, n: int) -> np.ndarray:
        return np.fromiter((len(v) for v in self.lists(column)), dtype=np.int64, count=n)


_NESTED = (list, tuple, dict, set, np.ndarray)


def _scalar_items(column: str, rows: np.ndarray, values: Values) -> Values:
    """``values``, after a DataError naming the record whose ``column`` holds a list or an object
    as an item: a list field holds strings or numbers (the few-records path leaves such records
    here, so every path refuses them alike)."""
    if _is_arrow(values) or not values.size:
        return values  # Arrow lists of strings or numbers only (arrowtypes)
    kinds = set(map(type, values.tolist()))
    if any(issubclass(kind, _NESTED) for kind in kinds):
        at = next(i for i, v in enumerate(values.tolist()) if isinstance(v, _NESTED))
        raise DataError(f"Record {int(rows[at]) + 1}: '{column}' must be a list of strings or numbers; "
                        f"an item is {_shown(values[at])}")
    return values


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text_field(records: list[dict[str, Any]], name: str) -> list[str] | None:
    """_strings of one scalar field, or None where the frame could read it differently (numbers)."""
    out = []
    for record in records:
        value = record.get(name)
        if value is None:
            out.append("")
        elif type(value) is str:
            out.append(value.strip())
        else:
            return None
    return out


EVENT_KEYS = (("event_timestamps", ("timestamp", "ts", "time")),
              ("event_lats", ("latitude", "lat")),
              ("event_lons", ("longitude", "lon", "lng")))


def _pick(events: Any, keys: tuple[str, ...]) -> list[Any]:
    """One field of each event object (the first of ``keys`` it has)."""
    if not isinstance(events, (list, tuple, np.ndarray)):
        return []
    return [next((ev[k] for k in keys if k in ev), None) for ev in events if isinstance(ev, dict)]


def normalise_records(frame: pd.DataFrame) -> pd.DataFrame:
    """Bring JSON-style ``events`` into the flat list columns; add missing columns."""
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    if "events" in frame.columns:
        ev = frame["events"]
        for column, keys in EVENT_KEYS:
            if column not in frame.columns:
                frame[column] = ev.map(lambda e, k=keys: _pick(e, k))
        frame = frame.drop(columns=["events"])
    for column in ("phone_brand", "device_model"):
        if column not in frame.columns:
            frame[column] = ""
    for column in LIST_FIELDS:
        if column not in frame.columns:
            frame[column] = None
    return frame


def _is_missing(value: Any) -> bool:
    return (value is None or value is pd.NA or value is pd.NaT
            or (isinstance(value, float) and math.isnan(value)))


def _strings(series: pd.Series) -> pd.Series:
    # a comprehension: pandas' string methods loop in Python too, after costly conversions
    return pd.Series(["" if _is_missing(v) else str(v).strip() for v in series.tolist()],
                     index=series.index, dtype=object)


def _vocab(values: Values, min_count: int, limit: int) -> list[str]:
    values = _objects(values)
    if values.size == 0:
        return []
    counts = pd.Series(values.astype(str)).value_counts()
    counts = counts[counts >= min_count]
    return [str(v) for v in counts.index[:limit]]


class _Vocabulary:
    """A fitted vocabulary as pandas and Arrow look it up, each built once per pipeline."""

    def __init__(self, values: list[str]) -> None:
        self.index = pd.Index(values, dtype=object)
        self._arrow: Any = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def arrow(self) -> Any:
        if self._arrow is None:
            import pyarrow as pa

            self._arrow = pa.array(self.index.to_numpy(), type=pa.string())
        return self._arrow

    def codes(self, values: Values) -> np.ndarray:
        """Position of each value's text, -1 where it is not there."""
        if _is_arrow(values) and (text := _arrow_text(values)) is not None:
            import pyarrow.compute as pc

            return np.asarray(pc.fill_null(pc.index_in(text, value_set=self.arrow), -1), dtype=np.int64)
        values = _objects(values)
        strings = values.dtype == object and set(map(type, values)) == {str}
        return np.asarray(self.index.get_indexer(values if strings else values.astype(str)))


def _bag(rows: np.ndarray, values: Values, vocab: _Vocabulary, n: int) -> sp.csr_matrix:
    """Binary bag-of-tokens matrix (n, len(vocab))."""
    if len(values) == 0 or len(vocab) == 0:
        return sp.csr_matrix((n, len(vocab)), dtype=np.float32)
    cols = vocab.codes(values)
    keep = cols >= 0
    mat = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
        shape=(n, len(vocab)),
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def _one_hot(keys: pd.Series, index: pd.Index) -> sp.csr_matrix:
    """One column per known value plus a final 'other' column."""
    n = len(keys)
    cols = index.get_indexer(keys.to_numpy(dtype=object))
    cols = np.where(cols < 0, len(index), cols)
    return sp.csr_matrix(
        (np.ones(n, dtype=np.float32), (np.arange(n), cols)), shape=(n, len(index) + 1)
    )


def _time_features(lists: _ListColumns, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, values = lists["event_timestamps"]
    counts: np.ndarray = np.bincount(rows, minlength=n).astype(np.float64)
    hours: np.ndarray = np.zeros((n, 24))
    weekend: np.ndarray = np.zeros(n)
    if len(values):
        hour, weekday, ok = _hours_and_weekdays(values)
        hr, wd, r = hour[ok], weekday[ok], rows[ok]
        hours = np.bincount(r * 24 + hr, minlength=n * 24).reshape(n, 24).astype(np.float64)
        weekend = np.bincount(r, weights=(wd >= 5).astype(np.float64), minlength=n)
        counts = np.bincount(r, minlength=n).astype(np.float64)
    denom = np.maximum(counts, 1.0)
    return counts, hours / denom[:, None], weekend / denom


def _geo_features(lists: _ListColumns, n: int) -> np.ndarray:
    r_lat, lat = lists["event_lats"]
    r_lon, lon = lists["event_lons"]
    out = np.full((n, 6), np.nan)
    out[:, 0] = 0.0
    out[:, 5] = 0.0
    la, lo = _coordinates("event_lats", r_lat, lat), _coordinates("event_lons", r_lon, lon)
    if len(la) != len(lo) or not np.array_equal(r_lat, r_lon):
        # A record whose lists differ in length has no points; the others keep theirs.
        same = np.bincount(r_lat, minlength=n) == np.bincount(r_lon, minlength=n)
        keep_lat, keep_lon = same[r_lat], same[r_lon]
        r_lat, la, lo = r_lat[keep_lat], la[keep_lat], lo[keep_lon]
    if len(la) == 0:
        return out
    valid = (np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90) & (np.abs(lo) <= 180)
             & ((np.abs(la) > 0.01) | (np.abs(lo) > 0.01)))
    total = np.bincount(r_lat, minlength=n).astype(np.float64)
    r, la, lo = r_lat[valid], la[valid], lo[valid]
    cnt = np.bincount(r, minlength=n).astype(np.float64)
    has = cnt > 0
    safe = np.maximum(cnt, 1.0)
    mlat = np.bincount(r, weights=la, minlength=n) / safe
    mlon = np.bincount(r, weights=lo, minlength=n) / safe
    vlat = np.bincount(r, weights=la * la, minlength=n) / safe - mlat**2
    vlon = np.bincount(r, weights=lo * lo, minlength=n) / safe - mlon**2
    a, o = np.round(la, 2), np.round(lo, 2)
    if r.size <= _SMALL:  # a set of a few tuples beats building a DataFrame
        distinct = set(zip(r.tolist(), a.tolist(), o.tolist(), strict=True))
        n_places = np.bincount(np.fromiter((p[0] for p in distinct), dtype=np.int64, count=len(distinct)),
                               minlength=n)
    else:
        places = pd.DataFrame({"r": r, "a": a, "o": o}).drop_duplicates()
        n_places = np.bincount(places["r"].to_numpy(dtype=np.int64), minlength=n)
    out[:, 0] = cnt / np.maximum(total, 1.0)
    out[has, 1] = mlat[has]
    out[has, 2] = mlon[has]
    out[has, 3] = np.sqrt(np.maximum(vlat[has], 0.0))
    out[has, 4] = np.sqrt(np.maximum(vlon[has], 0.0))
    out[:, 5] = np.log1p(n_places)
    return out


# The models read numbers as 32-bit floats: beyond this a value is not the number that was sent.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _coordinates(column: str, rows: np.ndarray, values: Values) -> np.ndarray:
    """``_floats`` of one coordinate column, after a DataError naming the record that holds a number
    that is not a finite 32-bit float (Infinity, 1e400, an integer of 400 digits, 1e39). Missing
    points (null, NaN, text) stay NaN: the feature counts them as invalid points."""
    try:
        out = _floats(values)
    except OverflowError:  # a number beyond float64: NumPy and pandas refuse the whole column
        out = np.array([_overflowed(v) for v in _objects(values).tolist()], dtype=np.float64)
    bad = np.abs(out) > FLOAT32_MAX  # inf included; NaN compares False
    if bad.any():
        at = int(np.argmax(bad))
        shown = _shown(_objects(values)[at])
        raise DataError(f"Record {int(rows[at]) + 1}: '{column}' holds {shown}, which is not a finite "
                        "32-bit float; send finite coordinates (null or NaN for a missing one)")
    return out


def _overflowed(value: Any) -> float:
    """inf for a value float() cannot hold, else NaN: only to find the culprit."""
    try:
        float(value)
    except OverflowError:
        return math.inf
    except (TypeError, ValueError):
        pass
    return math.nan


def _floats(values: Values) -> np.ndarray:
    """Numbers as float64, NaN where a value is missing or not a number."""
    if _is_arrow(values):
        import pyarrow as pa

        if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            return np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        values = _objects(values)
    if values.size <= _SMALL and {type(v) for v in values.tolist()} <= {int, float}:
        return np.array(values.tolist(), dtype=np.float64)  # what to_numeric gives plain numbers
    return np.asarray(pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64))


@dataclass
class DevicePipeline:
    """Fitted state of the raw-record pipeline, JSON-serialisable."""

    min_count: int = 2
    max_apps: int = 20000
    max_models: int = 5000
    brands: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    apps: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    dense_mean: list[float] = field(default_factory=list)
    dense_std: list[float] = field(default_factory=list)
    kind: str = "device_records"

    def __post_init__(self) -> None:
        self._index: dict[str, _Vocabulary] = {}

    # --- fitting ---------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> DevicePipeline:
        frame = normalise_records(frame)
        brand = _strings(frame["phone_brand"])
        model = brand + "|" + _strings(frame["device_model"])
        self.brands = _vocab(brand.to_numpy(), self.min_count, 10_000)
        self.models = _vocab(model.to_numpy(), self.min_count, self.max_models)
        lists = _Lists(frame)
        _, apps = lists["installed_apps"]
        _, active = lists["active_apps"]
        self.apps = _vocab(np.concatenate([_objects(apps), _objects(active)]), self.min_count, self.max_apps)
        _, cats = lists["app_categories"]
        self.categories = _vocab(cats, self.min_count, 2000)
        self._index = {}
        dense = self._dense(lists, len(frame))
        with warnings.catch_warnings():  # a column with no value at all (no geo in the data): 0 and 1
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(dense, axis=0)
            std = np.nanstd(dense, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-9), std, 1.0)
        self.dense_mean = [float(v) for v in mean]
        self.dense_std = [float(v) for v in std]
        return self

    # --- transforming ------------------------------------------------------------
    def _idx(self, name: str) -> _Vocabulary:
        if name not in self._index:
            self._index[name] = _Vocabulary(getattr(self, name))
        return self._index[name]

    def _dense(self, lists: _ListColumns, n: int) -> np.ndarray:
        counts, hours, weekend = _time_features(lists, n)
        geo = _geo_features(lists, n)
        n_inst = lists.counts("installed_apps", n).astype(np.float64)
        n_act = lists.counts("active_apps", n).astype(np.float64)
        n_cat = lists.counts("app_categories", n).astype(np.float64)
        return np.column_stack([
            np.log1p(counts), hours, weekend, geo,
            np.log1p(n_inst), np.log1p(n_act), n_act / np.maximum(n_inst, 1.0), np.log1p(n_cat),
        ])

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        frame = normalise_records(frame)
        n = len(frame)
        lists = _Lists(frame)
        dense = self._dense(lists, n)
        mean = np.asarray(self.dense_mean)
        dense = np.where(np.isnan(dense), mean, dense)
        dense = (dense - mean) / np.asarray(self.dense_std)
        brand = _strings(frame["phone_brand"])
        model = brand + "|" + _strings(frame["device_model"])
        r_inst, inst = lists["installed_apps"]
        r_act, act = lists["active_apps"]
        r_cat, cat = lists["app_categories"]
        blocks = [
            sp.csr_matrix(dense.astype(np.float32)),
            _one_hot(brand, self._idx("brands").index),
            _one_hot(model, self._idx("models").index),
            _bag(r_inst, inst, self._idx("apps"), n),
            _bag(r_act, act, self._idx("apps"), n),
            _bag(r_cat, cat, self._idx("categories"), n),
        ]
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def transform_records(self, records: list[dict[str, Any]]) -> sp.csr_matrix | None:
        """``transform`` of a few JSON records without building a DataFrame (the same matrix, entry
        for entry), or None for records it leaves to ``transform`` (scalar fields not text)."""
        brands, models = _text_field(records, "phone_brand"), _text_field(records, "device_model")
        if brands is None or models is None:
            return None
        n = len(records)
        lists = _RecordLists(records)
        mean = np.asarray(self.dense_mean)
        dense = self._dense(lists, n)
        dense = (np.where(np.isnan(dense), mean, dense) - mean) / np.asarray(self.dense_std)
        dense = dense.astype(np.float32)
        lookup = self._lookups()
        n_brands, n_models, n_apps = len(self.brands) + 1, len(self.models) + 1, len(self.apps)
        starts = list(itertools.accumulate([0, len(DENSE_NAMES), n_brands, n_models, n_apps, n_apps]))
        bags = [(lists.lists("installed_apps"), lookup["apps"], starts[3]),
                (lists.lists("active_apps"), lookup["apps"], starts[4]),
                (lists.lists("app_categories"), lookup["categories"], starts[5])]
        indices: list[int] = []
        data: list[float] = []
        indptr = [0]
        for i, row in enumerate(dense.tolist()):
            kept = [j for j, v in enumerate(row) if v != 0.0]  # csr_matrix(dense) stores no zeros
            indices += kept
            data += [row[j] for j in kept]
            brand, model = brands[i], brands[i] + "|" + models[i]
            indices += [starts[1] + lookup["brands"].get(brand, n_brands - 1),
                        starts[2] + lookup["models"].get(model, n_models - 1)]
            data += [1.0, 1.0]
            for each, vocab, start in bags:  # binary bags, as _bag makes them
                codes = {vocab.get(str(v), -1) for v in each[i]}
                codes.discard(-1)
                indices += [start + c for c in sorted(codes)]
                data += [1.0] * len(codes)
            indptr.append(len(indices))
        return sp.csr_matrix((np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int32),
                              np.asarray(indptr, dtype=np.int32)), shape=(n, self.n_features))

    def _lookups(self) -> dict[str, dict[str, int]]:
        """Each vocabulary as a dict: for a few values, faster than pandas' indexer."""
        if not hasattr(self, "_lookup"):
            self._lookup = {name: {v: i for i, v in enumerate(getattr(self, name))}
                            for name in ("brands", "models", "apps", "categories")}
        return self._lookup

    @property
    def feature_names(self) -> list[str]:
        return (
            list(DENSE_NAMES)
            + [f"brand={b}" for b in self.brands] + ["brand=" + OTHER]
            + [f"model={m}" for m in self.models] + ["model=" + OTHER]
            + [f"installed={a}" for a in self.apps]
            + [f"active={a}" for a in self.apps]
            + [f"category={c}" for c in self.categories]
        )

    @property
    def n_features(self) -> int:
        return len(DENSE_NAMES) + len(self.brands) + len(self.models) + 2 + 2 * len(self.apps) + len(
            self.categories
        )

    # --- persistence ---------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "min_count": self.min_count, "max_apps": self.max_apps,
            "max_models": self.max_models, "brands": self.brands, "models": self.models,
            "apps": self.apps, "categories": self.categories,
            "dense_mean": self.dense_mean, "dense_std": self.dense_std,
        }


@dataclass
class NumericPipeline:
    """Already-featurised numeric rows (SageMaker style): only the column count is checked."""

    columns: list[str] = field(default_factory=list)
    kind: str = "numeric"

    def fit(self, frame: pd.DataFrame) -> NumericPipeline:
        non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if non_numeric:
            raise DataError(
                f"Column(s) {', '.join(map(str, non_numeric[:5]))} are not numeric. Numeric training "
                "data must hold only numbers besides the label; for device records include "
                "phone_brand/device_model/installed_apps columns (or set input_format=device_records)"
            )
        self.columns = [str(c) for c in frame.columns]
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return frame.to_numpy(dtype=np.float32)

    @property
    def feature_names(self) -> list[str]:
        return list(self.columns)

    @property
    def n_features(self) -> int:
        return len(self.columns)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns}


Pipeline = DevicePipeline | NumericPipeline


def pipeline_from_json(data: dict[str, Any]) -> Pipeline:
    kind = data.get("kind")
    if kind == "numeric":
        return NumericPipeline(columns=list(data["columns"]))
    if kind == "device_records":
        fields_ = {k: v for k, v in data.items() if k != "kind"}
        return DevicePipeline(**fields_)
    raise ValueError(f"unknown pipeline kind {kind!r}")


def save_pipeline(pipeline: Pipeline, folder: Path) -> Path:
    path = folder / "pipeline.json"
    path.write_text(json.dumps(pipeline.to_json(), ensure_ascii=False), encoding="utf-8")
    return path


def load_pipeline(folder: Path) -> Pipeline:
    return pipeline_from_json(json.loads((folder / "pipeline.json").read_text(encoding="utf-8")))
