"""The sparse, many-items shape for propensity quality: MovieLens latest-small as NCF-style files.

610 users, 9,742 movies in the catalog (9,724 of them rated), 100,836 ratings: far more items
than users, so many candidates have few or no training interactions. Built from
``../shared/data/movielens-latest-small`` (``MLSHIP_DATA`` overrides) into the project's channel
formats, the way the NCF files are built from ml-1m: every rating is a positive; each user's
latest rating (by timestamp, the later row on a tie) is held out; it is ranked among 99
negatives drawn uniformly, with a fixed seed, from the WHOLE catalog (``movies.csv``) minus
what the user rated. The catalog goes in as the ``items`` channel, so it joins the model's
vocabulary. The data is read in place; the channels are written under the bench's work folder
(git-ignored), never committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

NAME = "ml-latest-small"
SEED = 2017
NEGATIVES = 99


def available(src: Path) -> bool:
    return (src / "ratings.csv").exists() and (src / "movies.csv").exists()


def prepare(work: Path, src: Path) -> Path:
    """train / validation / items channels under ``work/channels``; made once, then reused."""
    data = work / "channels"
    if (data / "validation" / "val.jsonl").exists():
        return data
    ratings = pd.read_csv(src / "ratings.csv")
    movies = pd.read_csv(src / "movies.csv")
    ratings = ratings.reset_index(names="row")
    latest = ratings.sort_values(["userId", "timestamp", "row"]).groupby("userId").tail(1)
    latest = latest[ratings.groupby("userId").size().loc[latest["userId"]].to_numpy() > 1]
    train = ratings.drop(index=latest.index)
    catalog = movies["movieId"].to_numpy()
    rng = np.random.default_rng(SEED)
    rated = ratings.groupby("userId")["movieId"].apply(lambda s: set(s.tolist()))
    for channel in ("train", "validation", "items"):
        (data / channel).mkdir(parents=True, exist_ok=True)
    train.rename(columns={"userId": "user", "movieId": "item"})[["user", "item", "timestamp"]].to_csv(
        data / "train" / "interactions.csv", index=False)
    with open(data / "validation" / "val.jsonl", "w") as fh:
        for user, item in latest[["userId", "movieId"]].itertuples(index=False):
            pool = catalog[~np.isin(catalog, list(rated[user]))]
            negatives = rng.choice(pool, NEGATIVES, replace=False)
            fh.write(json.dumps({"user": int(user), "item": int(item),
                                 "negatives": [int(x) for x in negatives]}) + "\n")
    movies.rename(columns={"movieId": "item"})[["item", "genres"]].to_csv(data / "items" / "movies.csv",
                                                                         index=False)
    return data
