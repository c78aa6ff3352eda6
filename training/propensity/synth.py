"""Synthetic user-item interactions with latent structure, plus user and item feature tables.

    python -m training.propensity.synth --users 500 --items 200 --out DIR

Writes DIR/interactions.csv (user,item,timestamp), DIR/users.csv and DIR/items.csv. Users
prefer items whose hidden category matches their taste, so every model has signal to learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = ["grocery", "travel", "fuel", "dining", "fashion", "electronics"]


def generate(users: int = 60, items: int = 40, per_user: int = 12, seed: int = 0
             ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    taste = rng.integers(0, len(CATEGORIES), users)
    cat = rng.integers(0, len(CATEGORIES), items)
    pop = rng.zipf(1.8, items).astype(float)
    rows = []
    for u in range(users):
        w = pop * np.where(cat == taste[u], 8.0, 1.0)
        w /= w.sum()
        n = max(2, int(rng.poisson(per_user)))
        chosen = rng.choice(items, size=min(n, items), replace=False, p=w)
        for t, i in enumerate(chosen):
            rows.append({"user": f"u{u:04d}", "item": f"m{i:04d}", "timestamp": 1_600_000_000 + 3600 * t
                         + int(rng.integers(0, 600))})
    inter = pd.DataFrame(rows)
    user_tab = pd.DataFrame({"user": [f"u{u:04d}" for u in range(users)],
                             "segment": [CATEGORIES[t] for t in taste],
                             "age_band": rng.choice(["18-24", "25-34", "35-49", "50+"], users),
                             "income": rng.normal(50, 15, users).round(1)})
    item_tab = pd.DataFrame({"item": [f"m{i:04d}" for i in range(items)],
                             "category": [CATEGORIES[c] for c in cat],
                             "tags": ["|".join(sorted({CATEGORIES[c], CATEGORIES[(c + 1) % 6]}))
                                      for c in cat],
                             "price": rng.gamma(2.0, 20.0, items).round(2)})
    return inter, user_tab, item_tab


def channels(base: Path, rows: int) -> dict[str, dict[str, str]]:
    """CI's data set when it is given none (the family's ``synthetic`` entry point): about ``rows``
    interactions, ~15 per user over a catalogue a third the size of the user base, in train/ (the
    job holds out each user's last one for validation); returns the job's inputdataconfig.json."""
    users = max(50, rows // 15)
    inter, _, _ = generate(users, max(30, users // 3), 15, seed=3)
    (base / "input/data/train").mkdir(parents=True)
    inter.to_csv(base / "input/data/train/interactions.csv", index=False)
    return {"train": {"ContentType": "text/csv"}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--per-user", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    inter, users, items = generate(args.users, args.items, args.per_user, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    inter.to_csv(args.out / "interactions.csv", index=False)
    users.to_csv(args.out / "users.csv", index=False)
    items.to_csv(args.out / "items.csv", index=False)


if __name__ == "__main__":
    main()
