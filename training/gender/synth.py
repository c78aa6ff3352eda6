"""Synthetic device records shaped like a mobile ad-tech company's data (TalkingData-like).

Brands, models, installed/active apps, app categories, event times and city-level geo,
with a gender signal spread thinly over all of them (as in real data, no single field
gives it away). Seeded and fast; the demo and the tests train on it.

    python -m training.gender.synth --rows 5000 --out data/train.csv [--format jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

# (brand, share, female lean, models)
BRANDS = [
    ("Xiaomi", 0.23, -0.15, ["MI 3", "MI 4", "MI note", "红米note", "MI 2S", "MI 5"]),
    ("Samsung", 0.18, 0.10, ["Galaxy S4", "Galaxy Note 3", "Galaxy S6", "Galaxy Grand 2", "Galaxy A5"]),
    ("Huawei", 0.17, -0.05, ["Mate 7", "荣耀畅玩4X", "P8", "荣耀6", "Ascend P7"]),
    ("vivo", 0.08, 0.35, ["X5Pro", "X6", "Y13", "X5SL"]),
    ("OPPO", 0.08, 0.40, ["R7", "R7 Plus", "A31", "N1 Mini"]),
    ("Meizu", 0.07, -0.10, ["MX4", "魅蓝note", "MX5", "MX4 Pro"]),
    ("Coolpad", 0.05, -0.05, ["大神F2", "8675", "7620L"]),
    ("Lenovo", 0.04, -0.20, ["K3 Note", "A788t", "乐檬K3"]),
    ("Gionee", 0.03, 0.05, ["GN9006", "F103"]),
    ("HTC", 0.02, 0.00, ["One M8", "Desire 820"]),
    ("LeTV", 0.02, -0.30, ["X600", "超级手机1"]),
    ("ZTE", 0.02, -0.10, ["Nubia Z7", "Q505T"]),
    ("Apple", 0.01, 0.30, ["iPhone 6"]),
]
CATEGORIES = ["Games", "Finance", "Shopping", "Beauty", "Sports", "News", "Video", "Music",
              "Travel", "Education", "Parenting", "Car", "Social", "Photography", "Health"]
CATEGORY_LEAN = {"Games": -0.8, "Finance": -0.3, "Shopping": 0.6, "Beauty": 1.2, "Sports": -0.9,
                 "News": -0.2, "Video": 0.1, "Music": 0.2, "Travel": 0.1, "Education": 0.3,
                 "Parenting": 1.0, "Car": -1.1, "Social": 0.2, "Photography": 0.7, "Health": 0.4}
CITIES = [(39.90, 116.40), (31.23, 121.47), (23.13, 113.26), (22.54, 114.06), (30.57, 104.07),
          (30.27, 120.15), (34.34, 108.94), (29.56, 106.55), (32.06, 118.80), (38.04, 114.51)]


def generate(rows: int, seed: int = 0, n_apps: int = 400, start: str = "2016-05-01") -> pd.DataFrame:
    """``rows`` device records with a ``gender`` label ("M"/"F")."""
    rng = np.random.default_rng(seed)
    gender_f = rng.random(rows) < 0.36
    lean = np.where(gender_f, 1.0, -1.0)

    shares = np.array([b[1] for b in BRANDS])
    brand_logits = np.log(shares)[None, :] + 0.5 * np.outer(lean, [b[2] for b in BRANDS])
    brand_p = np.exp(brand_logits)
    brand_p /= brand_p.sum(axis=1, keepdims=True)
    brand_idx = (brand_p.cumsum(axis=1) > rng.random(rows)[:, None]).argmax(axis=1)

    app_cat = rng.integers(0, len(CATEGORIES), n_apps)
    app_pop = rng.zipf(1.6, n_apps).astype(float)
    app_pop /= app_pop.sum()
    app_lean = np.array([CATEGORY_LEAN[CATEGORIES[c]] for c in app_cat]) + rng.normal(0, 0.5, n_apps)
    base = pd.Timestamp(start)

    records = []
    for i in range(rows):
        brand, _, _, models = BRANDS[brand_idx[i]]
        model = models[rng.integers(0, len(models))]
        k = int(rng.integers(0, 25))
        weights = app_pop * np.exp(0.22 * lean[i] * app_lean)
        weights /= weights.sum()
        installed: list[int] = (
            list(rng.choice(n_apps, size=min(k, n_apps), replace=False, p=weights)) if k else []
        )
        active = [a for a in installed if rng.random() < 0.35]
        n_events = int(rng.poisson(6)) if rng.random() < 0.7 else 0
        peak = 20.3 if gender_f[i] else 19.5
        hours = np.clip(rng.normal(peak, 4.0, n_events), 0, 23.99)
        days = rng.integers(0, 7, n_events)
        stamps = [(base + pd.Timedelta(days=int(d), hours=float(h))).strftime("%Y-%m-%d %H:%M:%S")
                  for d, h in zip(days, hours, strict=True)]
        if rng.random() < 0.35:
            lats = [0.0] * n_events
            lons = [0.0] * n_events
        else:
            city = CITIES[int(rng.integers(0, len(CITIES)))]
            spread = 0.05 if gender_f[i] else 0.07
            lats = list(np.round(city[0] + rng.normal(0, spread, n_events), 4))
            lons = list(np.round(city[1] + rng.normal(0, spread, n_events), 4))
        records.append({
            "device_id": str(-(10**18) + int(rng.integers(0, 2**62))),
            "gender": "F" if gender_f[i] else "M",
            "phone_brand": brand,
            "device_model": model,
            "installed_apps": [f"app_{a}" for a in installed],
            "active_apps": [f"app_{a}" for a in active],
            "app_categories": sorted({CATEGORIES[app_cat[a]] for a in installed}),
            "event_timestamps": stamps,
            "event_lats": [float(v) for v in lats],
            "event_lons": [float(v) for v in lons],
        })
    return pd.DataFrame.from_records(records)


def to_csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists joined with '|' so the records fit in CSV cells."""
    out = frame.copy()
    for column in out.columns:
        if out[column].map(lambda v: isinstance(v, list)).any():
            out[column] = out[column].map(lambda v: "|".join(str(x) for x in v))
    return out


def write(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        to_csv_frame(frame).to_csv(path, index=False)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for rec in frame.to_dict(orient="records"):
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(f"unknown format {fmt}")


def numeric(rows: int, features: int = 60, seed: int = 0) -> pd.DataFrame:
    """Already-featurised rows (label first, no header), as SageMaker's built-in XGBoost takes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features) / np.sqrt(features)
    logit = x @ w + 0.5 * np.sin(x[:, 0] * 2) + 0.3 * x[:, 1] * x[:, 2]
    y = (rng.random(rows) < 1 / (1 + np.exp(-2 * logit))).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    frame.insert(0, "label", y)
    return frame


def channels(base: Path, rows: int) -> dict[str, dict[str, str]]:
    """CI's data set when it is given none (the family's ``synthetic`` entry point): ``rows``
    records under base/input/data, 80% as CSV in train/, the rest as JSON Lines in validation/;
    returns the job's inputdataconfig.json."""
    frame = generate(rows, seed=7)
    cut = int(rows * 0.8)
    write(frame.iloc[:cut], base / "input/data/train/devices.csv", "csv")
    write(frame.iloc[cut:], base / "input/data/validation/devices.jsonl", "jsonl")
    return {"train": {"ContentType": "text/csv"}, "validation": {"ContentType": "application/jsonlines"}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=["csv", "jsonl", "parquet"], default="csv")
    parser.add_argument("--numeric", type=int, default=0, help="write N numeric features instead")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.numeric:
        frame = numeric(args.rows, args.numeric, args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False, header=False)
    else:
        write(generate(args.rows, args.seed), args.out, args.format)


if __name__ == "__main__":
    main()
