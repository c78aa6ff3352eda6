"""The gender feature pipeline: same features for every input form, JSON round trip."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from modelformat.gender import features
from training.gender import synth


def test_pipeline_is_deterministic_and_survives_json_round_trip() -> None:
    frame = synth.generate(200, seed=3, n_apps=40).drop(columns=["gender"])
    pipe = features.DevicePipeline(min_count=1).fit(frame)
    x = pipe.transform(frame)
    assert x.shape == (200, pipe.n_features) == (200, len(pipe.feature_names))
    again = features.pipeline_from_json(json.loads(json.dumps(pipe.to_json())))
    assert (again.transform(frame) != x).nnz == 0  # type: ignore[union-attr]


def test_list_forms_give_identical_features() -> None:
    frame = synth.generate(50, seed=1, n_apps=30).drop(columns=["gender"])
    pipe = features.DevicePipeline(min_count=1).fit(frame)
    as_lists = pipe.transform(frame)
    as_csv = pipe.transform(synth.to_csv_frame(frame))
    assert abs(as_lists - as_csv).max() < 1e-6
    events = frame.copy()
    events["events"] = [
        [{"timestamp": t, "latitude": a, "longitude": o} for t, a, o in zip(ts, la, lo, strict=True)]
        for ts, la, lo in zip(frame.event_timestamps, frame.event_lats, frame.event_lons, strict=True)
    ]
    events = events.drop(columns=["event_timestamps", "event_lats", "event_lons"])
    assert abs(pipe.transform(events) - as_lists).max() < 1e-6


def test_unknown_values_and_missing_fields_are_tolerated() -> None:
    frame = synth.generate(80, seed=2, n_apps=30).drop(columns=["gender"])
    pipe = features.DevicePipeline(min_count=1).fit(frame)
    odd = pd.DataFrame([{"phone_brand": "NoSuchBrand", "installed_apps": "app_x app_1"},
                        {"device_model": None}])
    x = pipe.transform(odd).toarray()
    assert x.shape == (2, pipe.n_features) and np.all(np.isfinite(x))
    names = pipe.feature_names
    assert x[0, names.index("brand=" + features.OTHER)] == 1.0


def test_hour_histogram_counts_events() -> None:
    frame = pd.DataFrame([{"phone_brand": "a", "event_timestamps": ["2016-05-01 10:00:00",
                                                                   "2016-05-02 10:30:00",
                                                                   "2016-05-07 22:00:00"]}])
    dense = features.DevicePipeline()._dense(features._Lists(features.normalise_records(frame)), 1)
    names = features.DENSE_NAMES
    assert dense[0, names.index("hour_10")] == 2 / 3
    assert dense[0, names.index("hour_22")] == 1 / 3
    assert dense[0, names.index("weekend_share")] == 2 / 3  # 05-01 Sunday, 05-02 Monday, 05-07 Saturday


def test_timestamps_in_mixed_forms_read_as_wall_clock_hours() -> None:
    """Epoch seconds, text, ISO with a zone, garbage: one device may send them all (this once raised)."""
    stamps = [1462096800, "1462096800", "2016-05-01 10:15:00", "2016-05-01T10:45:00+08:00",
              "2016-05-01T10:50:00Z", "not a time", None]
    frame = pd.DataFrame([{"phone_brand": "a", "event_timestamps": stamps},
                          {"phone_brand": "b", "event_timestamps": ["2016-05-01 23:00:00"]}])
    dense = features.DevicePipeline()._dense(features._Lists(features.normalise_records(frame)), 2)
    names = features.DENSE_NAMES
    # 1462096800 is 2016-05-01 10:00 UTC; the zone suffixes are dropped, not converted
    assert dense[0, names.index("hour_10")] == 1.0
    assert dense[1, names.index("hour_23")] == 1.0


def test_parquet_style_array_cells_give_the_same_features() -> None:
    frame = synth.generate(60, seed=4, n_apps=30).drop(columns=["gender"])
    pipe = features.DevicePipeline(min_count=1).fit(frame)
    arrays = frame.copy()
    for column in features.LIST_FIELDS:
        arrays[column] = [np.asarray(v) for v in frame[column]]
    assert (pipe.transform(arrays) != pipe.transform(frame)).nnz == 0


def test_small_and_large_timestamp_paths_agree() -> None:
    """A few timestamps are parsed in Python (request latency), many with pandas: same answers."""
    values = np.array([1462096800, "1462096800", "2016-05-01 10:15:00", "2016-05-01T10:45:00+08:00",
                       "2016-05-01T10:50:00Z", None, float("nan"), 1.5e12, "2016-05-07", " 2016-05-07 23:59:59 ",
                       "3000-01-01 00:00:00", "1200-06-01 08:00:00",
                       "20160502", -5, "1e9", "1.5e12", "2016-05-01 10:15:00.5"], dtype=object)
    assert all(decided for _, decided in map(features._parse_one, values))  # the Python path is taken
    hour, weekday, ok = features._hours_and_weekdays(values)
    stamps = features._parse_times(values)
    assert ok.tolist() == stamps.notna().tolist()
    assert hour[ok].tolist() == stamps.dt.hour[ok].astype(int).tolist()
    assert weekday[ok].tolist() == stamps.dt.day_of_week[ok].astype(int).tolist()
    # an epoch beyond pandas' range is unreadable in both paths, never an exception
    assert not features._parse_times(np.array([1e15, "1e15"], dtype=object)).notna().any()


def _odd_devices() -> pd.DataFrame:
    """Synthetic devices plus the awkward cases: empty and missing lists, integer app ids, stamps
    of every form (enough of them that the large-batch paths run), missing coordinates."""
    frame = synth.generate(300, seed=5, n_apps=30).drop(columns=["gender"])
    odd_stamps = ["1462096800", "2016-05-01T10:45:00+08:00", "2016-05-01T10:50:00Z", "not a time",
                  " 2016-05-07 23:59:59 ", "2016-05-07", "3000-01-01 00:00:00", "1200-01-01 00:00:00",
                  "2016-05-01 10:15:00.5", "2016-13-01 10:00:00", ""]
    frame.at[0, "event_timestamps"] = odd_stamps
    frame.at[0, "event_lats"] = [0.0] * len(odd_stamps)
    frame.at[0, "event_lons"] = [0.0] * len(odd_stamps)
    frame.at[1, "installed_apps"] = []
    frame.at[2, "installed_apps"] = None
    frame.at[3, "app_categories"] = None
    for column in ("event_timestamps", "event_lats", "event_lons"):
        frame.at[4, column] = None
    frame.at[5, "phone_brand"] = None
    return frame


def test_arrow_list_columns_from_parquet_and_jsonl_give_the_same_features(tmp_path: Path) -> None:
    """Batch jobs keep list columns in Arrow (no numpy array per row): same features, bit for bit."""
    from inference.portal import sources

    frame = _odd_devices()
    pipe = features.DevicePipeline(min_count=1).fit(frame)
    expected = pipe.transform(frame)
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    for name in ("d.parquet", "d.jsonl"):
        path = tmp_path / name
        chunks = list(sources.chunks(path, sources.detect_format(name, None), 120))
        assert features.arrow_lists(chunks[0]["installed_apps"].dtype), name  # the Arrow path is taken
        got = sp.vstack([pipe.transform(c) for c in chunks]).tocsr()
        assert got.shape == expected.shape
        assert abs(got - expected).max() < 1e-6, name


def test_integer_app_ids_in_arrow_match_their_text() -> None:
    import pyarrow as pa

    lists = [[101, 102], [], None, [103, 101]]
    arrow = pd.DataFrame({"phone_brand": ["a"] * 4,
                          "installed_apps": pd.array(lists, dtype=pd.ArrowDtype(pa.list_(pa.int64())))})
    plain = pd.DataFrame({"phone_brand": ["a"] * 4, "installed_apps": [[str(v) for v in x or []] for x in lists]})
    pipe = features.DevicePipeline(min_count=1).fit(plain)
    assert pipe.apps and (pipe.transform(arrow) != pipe.transform(plain)).nnz == 0


def test_arrow_timestamp_path_agrees_with_pandas() -> None:
    import pyarrow as pa

    values = ["2016-05-01 10:15:00", "1462096800", "2016-05-01T10:45:00+08:00", "nope", None,
              "3000-01-01 00:00:00", "2016-02-29 23:59:59", "2016-05-07", "2016-05-01 10:15:00.5"] * 40
    assert len(values) > features._SMALL
    hour, weekday, ok = features._hours_and_weekdays(pa.array(values, type=pa.string()))
    stamps = features._parse_times(np.array(values, dtype=object))
    assert ok.tolist() == stamps.notna().tolist()
    assert hour[ok].tolist() == stamps.dt.hour[ok].astype(int).tolist()
    assert weekday[ok].tolist() == stamps.dt.day_of_week[ok].astype(int).tolist()


def _odd_records(rng: np.random.Generator, base: list[dict[str, object]]) -> list[dict[str, object]]:
    """The synthetic records bent the ways clients send them: events as objects, '|'-joined
    strings, missing and null fields, numbers as text, unknown values, bad coordinates."""
    out = []
    for i, record in enumerate(base):
        r = dict(record)
        kind = i % 8
        if kind == 1:
            r["events"] = [{"timestamp": t, "latitude": a, "longitude": o} for t, a, o in
                           zip(r.pop("event_timestamps"), r.pop("event_lats"), r.pop("event_lons"), strict=True)]
        elif kind == 2:
            r["installed_apps"] = "|".join(map(str, r["installed_apps"]))  # type: ignore[arg-type]
            r["app_categories"] = None
        elif kind == 3:
            r.pop("device_model")
            r.pop("active_apps")
            r["phone_brand"] = None
        elif kind == 4:
            r["event_lats"] = [str(v) for v in r["event_lats"]] + [0.0]  # type: ignore[attr-defined]
            r["event_lons"] = [*list(r["event_lons"]), 0.0]  # type: ignore[call-overload]
        elif kind == 5:
            r["phone_brand"], r["device_model"] = "  Nobody's Phone ", "X-1"
            r["installed_apps"] = [5001, "5002", int(rng.integers(1, 10**12)), "not-an-app"]  # ids as numbers
        elif kind == 6:
            r["event_timestamps"] = [1462100000, "1462100000.5", "2016-05-03T10:00:00Z", None, "garbage"]
            r["event_lats"] = [999.0, 38.1, None, 38.2, 38.3]
            r["event_lons"] = [114.4, 114.5, 114.6]  # not aligned with the lats: no geo features
        elif kind == 7:
            r = {"device_id": r["device_id"], "phone_brand": r["phone_brand"]}
        out.append(r)
    return out


def test_a_few_json_records_featurise_as_sent_exactly_as_through_a_frame() -> None:
    train = synth.generate(600, seed=3)
    train["installed_apps"] = [[*apps, "5001", "5002"] for apps in train["installed_apps"]]  # numeric ids
    pipeline = features.DevicePipeline().fit(train.drop(columns=["gender"]))
    rng = np.random.default_rng(5)
    checked = 0
    for seed in range(12):
        base = json.loads(synth.generate(16, seed=100 + seed).drop(columns=["gender"]).to_json(orient="records"))
        records = _odd_records(rng, base) if seed % 2 else base
        start = 0
        for size in itertools.cycle((1, 2, 3)):  # every record, in batches of one to three
            if start >= len(records):
                break
            batch, start = records[start:start + size], start + size
            got = pipeline.transform_records(batch)
            want = pipeline.transform(pd.DataFrame.from_records(batch))
            assert got is not None and got.shape == want.shape
            assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices), batch
            assert np.array_equal(got.data, want.data), batch
            checked += 1
    assert checked >= 12 * 8
    assert pipeline.transform_records([{"phone_brand": 7, "installed_apps": []}]) is None  # left to the frame
