"""A few raw device records as the forest's dense float32 rows, without NumPy.

``DevicePipeline.transform_records`` builds a SciPy CSR matrix through NumPy, and the scorer then
spreads it into a dense row: for one record that costs ten times what walking 200 trees does.
Here each record becomes its row directly: the 35 dense features computed as the NumPy code
computes them (the same operations on the same float64 values in the same order: sequential
sums, ``x * x`` for a square, ``rint(x * 100) / 100`` for ``np.round(x, 2)``, the logarithms by
NumPy itself), the one-hot and bag columns set to 1, and every entry the CSR matrix would not
store (a zero, an unknown token) left NaN, which is how XGBoost reads an absent sparse entry.

Only records this path reads exactly as the frame path does are taken: anything else (a
timestamp only pandas can read, a coordinate that is not a plain number, hundreds of events)
returns None and the caller featurises through ``transform_records``.
tests/unit/test_record_rows.py compares both over many random records.

The features are computed here; the loops that scale and write them into the row (35 floats,
and a 1 for each known app and category) are the compiled forest module's ``put_dense`` and
``mark`` (the same float64 operations, then C's cast to float32), which cost a fifth of the
Python loops. Without that module the records take the general path, as they would for its walk
anyway. Records as clients send them (``plain_rows``: every list field a JSON list) skip the
per-field checks that the general path makes.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from modelformat.forest import compiled
from modelformat.gender.features import (
    _NESTED,
    DENSE_NAMES,
    FLOAT32_MAX,
    DevicePipeline,
    _parse_one,
    _RecordLists,
    _text_field,
)

_MANY = 256  # beyond this many events a column takes NumPy's (and pandas') path in features.py
_N_DENSE = len(DENSE_NAMES)
NAN = float("nan")
_NO_HOURS = [0.0] * 24
_PLAIN = itemgetter("phone_brand", "device_model", "event_timestamps", "event_lats", "event_lons",
                    "installed_apps", "active_apps", "app_categories")
_PLAIN_TYPES = (str, str, list, list, list, list, list, list)


class RecordRows:
    """One fitted pipeline's vocabularies (as positions in a row) and scaling (as float64 arrays)."""

    def __init__(self, pipeline: DevicePipeline) -> None:
        self.n_features = pipeline.n_features
        self.mean = array("d", pipeline.dense_mean)
        self.std = array("d", pipeline.dense_std)
        lookup = pipeline._lookups()  # the dicts transform_records reads too, built once per pipeline
        self.brands, self.models = lookup["brands"], lookup["models"]
        n_brands, n_models, n_apps = len(pipeline.brands) + 1, len(pipeline.models) + 1, len(pipeline.apps)
        self.brand_start = _N_DENSE
        self.model_start = self.brand_start + n_brands
        installed_start = self.model_start + n_models
        active_start = installed_start + n_apps
        category_start = active_start + n_apps
        self.other_brand, self.other_model = n_brands - 1, n_models - 1
        self._blank = array("f", [NAN]) * self.n_features
        # Each known app's and category's position in a row, its block's start included.
        self.installed_at = {app: installed_start + code for app, code in lookup["apps"].items()}
        self.active_at = {app: active_start + code for app, code in lookup["apps"].items()}
        self.category_at = {name: category_start + code for name, code in lookup["categories"].items()}

    def rows(self, records: list[dict[str, Any]]) -> array[float] | None:
        """The records' rows, one after another (``len(records) * n_features`` float32), or None."""
        brands, models = _text_field(records, "phone_brand"), _text_field(records, "device_model")
        if brands is None or models is None:
            return None
        return self._fill(brands, models, zip(*_columns(records), strict=True))

    def plain_rows(self, records: list[dict[str, Any]]) -> array[float] | None:
        """``rows`` of records as a client's SDK sends them (every list field a JSON list, brand and
        model strings, no ``events``), else None. Such records also pass every check the general
        path makes (``_check_record_values``, ``is_raw_frame``), so the caller skips those."""
        brands, models, lists = [], [], []
        for record in records:
            try:
                fields = _PLAIN(record)
            except KeyError:
                return None
            if tuple(map(type, fields)) != _PLAIN_TYPES or "events" in record:
                return None
            brands.append(fields[0].strip())
            models.append(fields[1].strip())
            lists.append(fields[2:])
        return self._fill(brands, models, lists)

    def _fill(self, brands: list[str], models: list[str], lists: Iterable[Sequence[list[Any]]]
              ) -> array[float] | None:
        """Rows from each record's brand, model and six lists (``_LISTS``' order)."""
        if compiled is None:  # the rows are for the compiled walk, and written by its module
            return None
        put_dense, mark = compiled.put_dense, compiled.mark
        out = self._blank * len(brands)
        width = self.n_features
        for i, (stamps, lats, lons, installed, active, categories) in enumerate(lists):
            dense = self._dense(stamps, lats, lons, len(installed), len(active), len(categories))
            if dense is None:
                return None
            base = i * width
            put_dense(out, base, dense, self.mean, self.std)  # scaled, float32, NaN where 0
            brand = brands[i]
            out[base + self.brand_start + self.brands.get(brand, self.other_brand)] = 1.0
            out[base + self.model_start + self.models.get(brand + "|" + models[i], self.other_model)] = 1.0
            for values, at in ((installed, self.installed_at), (active, self.active_at),
                               (categories, self.category_at)):
                values = values if type(values) is list else list(values)
                if mark(out, base, at, values):  # number ids: the frame path reads them as str()
                    for value in values:
                        if type(value) is str:
                            continue
                        if isinstance(value, _NESTED):
                            return None  # features.py refuses the record, naming it
                        if (position := at.get(str(value))) is not None:
                            out[base + position] = 1.0
        return out

    def _dense(self, stamps: list[Any], lats: list[Any], lons: list[Any], n_inst: int, n_act: int,
               n_cat: int) -> list[float] | None:
        """The 35 dense features of one record before scaling (float64, NaN where the frame path
        puts the mean), or None."""
        if len(stamps) > _MANY or len(lats) > _MANY:
            return None
        readable = 0
        if stamps:
            hours = [0.0] * 24
            weekend = 0.0
            for value in stamps:
                stamp, decided = _parse_one(value)
                if not decided:
                    return None
                if stamp is not None:
                    readable += 1
                    hours[stamp.hour] += 1.0
                    if stamp.weekday() >= 5:
                        weekend += 1.0
            denom = max(float(readable), 1.0)
            shares = [h / denom for h in hours]
            weekend /= denom
        else:  # what the loop gives without events: 0.0 / 1.0 for each hour
            shares, weekend = _NO_HOURS, 0.0
        geo = _geo(lats, lons)
        if geo is None:
            return None
        share, mlat, mlon, slat, slon, n_places = geo
        log1p = _LOG1P
        return [log1p[readable], *shares, weekend, share, mlat, mlon, slat, slon,
                log1p[n_places], log1p[n_inst], log1p[n_act], n_act / max(float(n_inst), 1.0), log1p[n_cat]]


_LISTS = ("event_timestamps", "event_lats", "event_lons", "installed_apps", "active_apps", "app_categories")


def _columns(records: list[dict[str, Any]]) -> list[list[Any]]:
    """Each list field of each record, as _RecordLists reads it (which does the general case)."""
    if not any("events" in r for r in records):
        values = [[r.get(c) for r in records] for c in _LISTS]
        if all(type(v) is list for column in values for v in column):
            return values  # lists as JSON sends them: what _RecordLists would give back
    lists = _RecordLists(records)
    return [lists.lists(c) for c in _LISTS]


class _Log1p(dict[int, float]):
    """NumPy's log1p of a count as float64 (the value the frame path computes), remembered."""

    def __missing__(self, count: int) -> float:
        value = float(np.log1p(np.array([count], dtype=np.float64))[0])
        if len(self) < 4096:
            self[count] = value
        return value


_LOG1P = _Log1p()


def _geo(lats: list[Any], lons: list[Any]) -> tuple[float, float, float, float, float, int] | None:
    """_geo_features of one record: share of valid points, mean and spread of latitude and
    longitude (NaN without a valid point), distinct places; None where NumPy's path must read."""
    if len(lats) != len(lons):
        return None  # features.py checks each value, then gives such a record no points
    if not lats:
        return 0.0, NAN, NAN, NAN, NAN, 0
    kinds = {type(v) for v in lats} | {type(v) for v in lons}
    if not kinds <= {int, float}:
        return None  # text, None, bools: pandas' to_numeric decides those
    total = float(len(lats))
    count = 0
    sum_lat = sum_lon = sq_lat = sq_lon = 0.0
    places = set()
    try:
        pairs = list(zip(map(float, lats), map(float, lons), strict=True))
    except OverflowError:
        return None  # an integer beyond float64: features.py names it
    for la, lo in pairs:
        if not (math.isfinite(la) and math.isfinite(lo) and abs(la) <= 90 and abs(lo) <= 180
                and (abs(la) > 0.01 or abs(lo) > 0.01)):
            if abs(la) > FLOAT32_MAX or abs(lo) > FLOAT32_MAX:
                return None  # not a float32 (inf too): features.py names it
            continue
        count += 1
        sum_lat += la
        sum_lon += lo
        sq_lat += la * la
        sq_lon += lo * lo
        places.add((round(la * 100.0) / 100.0, round(lo * 100.0) / 100.0))  # np.round(x, 2)
    if not count:
        return 0.0, NAN, NAN, NAN, NAN, 0
    safe = float(count)
    mlat, mlon = sum_lat / safe, sum_lon / safe
    vlat, vlon = sq_lat / safe - mlat * mlat, sq_lon / safe - mlon * mlon
    return (count / max(total, 1.0), mlat, mlon, math.sqrt(max(vlat, 0.0)), math.sqrt(max(vlon, 0.0)),
            len(places))
