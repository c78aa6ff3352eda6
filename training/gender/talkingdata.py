"""Load the TalkingData "mobile user demographics" file layout into device records.

    python -m training.gender.talkingdata --src DIR --out train.jsonl [--format jsonl|parquet|csv]

Reads the files that are present in DIR: gender_age_train.csv (required: device_id, gender),
phone_brand_device_model.csv, events.csv (or events*.csv), app_events.csv, app_labels.csv and
label_categories.csv, and writes one record per labelled device in the raw schema
modelformat.gender.features documents. The data's licence forbids redistribution: read it from
where it lies, never copy it into an image or a repository.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from training.errors import UserError
from training.gender import synth

log = logging.getLogger("training.gender.talkingdata")


def _find(src: Path, *names: str) -> Path | None:
    for name in names:
        hits = sorted(src.glob(name))
        if hits:
            return hits[0]
    return None


def load(src: Path, with_test: bool = False) -> pd.DataFrame:
    """Device records with a ``gender`` column, built from the files found in ``src``."""
    labels_path = _find(src, "gender_age_train.csv")
    if labels_path is None:
        raise UserError(f"{src} has no gender_age_train.csv (the TalkingData label file)")
    devices = pd.read_csv(labels_path, dtype={"device_id": str})[["device_id", "gender"]]
    devices = devices.drop_duplicates("device_id")
    log.info("%d labelled devices from %s", len(devices), labels_path.name)

    brands_path = _find(src, "phone_brand_device_model.csv")
    if brands_path is not None:
        brands = pd.read_csv(brands_path, dtype={"device_id": str}).drop_duplicates("device_id")
        devices = devices.merge(brands[["device_id", "phone_brand", "device_model"]], on="device_id",
                                how="left")
    else:
        devices["phone_brand"], devices["device_model"] = "", ""

    events_path = _find(src, "events.csv", "events_*.csv", "events*.csv")
    lists = pd.DataFrame({"device_id": devices["device_id"]})
    if events_path is not None:
        events = pd.read_csv(events_path, dtype={"device_id": str, "event_id": str})
        events = events[events["device_id"].isin(set(devices["device_id"]))]
        log.info("%d events of labelled devices from %s", len(events), events_path.name)
        grouped = events.sort_values("timestamp").groupby("device_id").agg(
            event_timestamps=("timestamp", list), event_lats=("latitude", list),
            event_lons=("longitude", list))
        lists = lists.merge(grouped, left_on="device_id", right_index=True, how="left")
        app_events_path = _find(src, "app_events.csv")
        if app_events_path is not None:
            app_events = pd.read_csv(app_events_path, dtype={"event_id": str, "app_id": str})
            joined = app_events.merge(events[["event_id", "device_id"]], on="event_id")
            installed = joined.groupby("device_id")["app_id"].agg(lambda s: sorted(set(s)))
            active = joined[joined["is_active"] == 1].groupby("device_id")["app_id"].agg(
                lambda s: sorted(set(s)))
            lists = lists.merge(installed.rename("installed_apps"), left_on="device_id",
                                right_index=True, how="left")
            lists = lists.merge(active.rename("active_apps"), left_on="device_id",
                                right_index=True, how="left")
            labels = _find(src, "app_labels.csv")
            if labels is not None:
                app_labels = pd.read_csv(labels, dtype={"app_id": str, "label_id": str})
                names = _find(src, "label_categories.csv")
                if names is not None:
                    cats = pd.read_csv(names, dtype={"label_id": str})
                    app_labels = app_labels.merge(cats, on="label_id", how="left")
                    app_labels["label"] = app_labels["category"].fillna(app_labels["label_id"])
                else:
                    app_labels["label"] = app_labels["label_id"]
                dev_cats = joined[["device_id", "app_id"]].drop_duplicates().merge(
                    app_labels[["app_id", "label"]], on="app_id")
                cats_per_device = dev_cats.groupby("device_id")["label"].agg(lambda s: sorted(set(s)))
                lists = lists.merge(cats_per_device.rename("app_categories"), left_on="device_id",
                                    right_index=True, how="left")
    records = devices.merge(lists, on="device_id", how="left")
    for column in ("installed_apps", "active_apps", "app_categories", "event_timestamps",
                   "event_lats", "event_lons"):
        if column not in records.columns:
            records[column] = [[] for _ in range(len(records))]
        else:
            records[column] = records[column].map(lambda v: v if isinstance(v, list) else [])
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--format", choices=["jsonl", "parquet", "csv"], default="jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    try:
        frame = load(args.src)
    except UserError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    synth.write(frame, args.out, args.format)
    sys.stdout.write(f"wrote {len(frame)} device records to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
