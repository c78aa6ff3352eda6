"""Propensity quality through `train`: ml-1m as in the NCF paper, and a sparse many-items shape.

ml-1m: the NCF paper's own leave-one-out split, from ../shared/data/ml-1m-ncf (train.rating,
test.rating, test.negative) and, for Wide & Deep, ../shared/data/ml-1m-raw (users.dat,
movies.dat). Each held-out positive is ranked among the paper's 99 given negatives (validation
channel with a ``negatives`` column). Results beside the paper's numbers.

ml-latest-small: MovieLens latest-small (610 users, 9,742 catalog items), leave-one-out by
timestamp, 99 negatives sampled from the whole catalog with a fixed seed (bench/sparse_catalog.py);
ItemPop, MF and NeuMF with the project's default hyperparameters.

Each dataset is skipped with a message when absent (``MLSHIP_DATA`` points at the shared data
folder). Every run reports HR@10 / NDCG@10 over all cases and over the warm ones, the cold
counts, and wall time per epoch and samples/s on this machine.

    python -m bench.propensity_quality [--datasets ml-latest-small,ml-1m]
                                       [--only popularity,mf,neumf,neumf64,wide_deep,neumf_pretrain,
                                               neumf64_pretrain]
                                       [--epochs 20] [--set key=value ...] [--tag name]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench import sparse_catalog
from bench.harness import BIN, DATA, RESULTS, save

PAPER = {"popularity": (0.4535, 0.2542), "neumf": (0.701, 0.425), "neumf64": (0.701, 0.425),
         "neumf_pretrain": (0.726, 0.445), "neumf64_pretrain": (0.730, 0.447),
         "mf": (0.7018, 0.4280)}


def runs(epochs: int) -> dict[str, dict[str, Any]]:
    neural = {"epochs": epochs, "batch_size": 1024, "learning_rate": 0.001, "negatives": 4,
              "patience": 4, "eval_negatives": 99, "top_k": 10}
    return {
        "popularity": {"algorithm": "popularity"},
        "mf": {**neural, "algorithm": "mf", "factors": 64, "reg": 0.0},
        # The authors' 3-hidden-layer MLP, with weight averaging: measured best (bench/RESULTS.md)
        "neumf": {**neural, "algorithm": "neumf", "factors": 32, "mlp_layers": "256,128,64,32",
                  "ema": 0.999, "patience": 3},
        "neumf64": {**neural, "algorithm": "neumf", "factors": 64, "mlp_layers": "512,256,128,64",
                    "ema": 0.999, "patience": 3},
        "wide_deep": {**neural, "algorithm": "wide_deep", "factors": 32},
        "neumf_pretrain": {**neural, "algorithm": "neumf", "factors": 32, "mlp_layers": "256,128,64,32",
                           "ema": 0.999, "patience": 3, "pretrain": True,
                           "finetune_optimizer": "sgd", "finetune_learning_rate": 0.001},
        # alpha 0.7: best of 0.5-0.8 on the shared pre-training (bench/RESULTS.md)
        "neumf64_pretrain": {**neural, "algorithm": "neumf", "factors": 64, "mlp_layers": "512,256,128,64",
                             "ema": 0.999, "patience": 3, "pretrain": True, "alpha": 0.7,
                             "finetune_optimizer": "sgd", "finetune_learning_rate": 0.001},
    }


# The project's defaults: only what the protocol fixes (K = 10; the negatives come with the data).
SPARSE_RUNS: dict[str, dict[str, Any]] = {
    "popularity": {"algorithm": "popularity"}, "mf": {"algorithm": "mf"}, "neumf": {"algorithm": "neumf"}}
DEFAULT_ONLY = {"ml-1m": "popularity,mf,neumf,wide_deep,neumf64_pretrain",
                sparse_catalog.NAME: "popularity,mf,neumf"}


def prepare(work: Path, ncf: Path, raw: Path) -> Path:
    """Channels in the project's formats; the licensed files are read in place, never copied."""
    data = work / "channels"
    if (data / "validation" / "val.jsonl").exists():
        return data
    (data / "train").mkdir(parents=True, exist_ok=True)
    target = data / "train" / "ml-1m.train.rating.tsv"
    if not target.exists():
        target.symlink_to(ncf / "ml-1m.train.rating")
    test = pd.read_csv(ncf / "ml-1m.test.rating", sep="\t", header=None, names=["user", "item", "r", "t"])
    negatives = []
    with open(ncf / "ml-1m.test.negative") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            negatives.append([int(x) for x in parts[1:]])
    (data / "validation").mkdir(parents=True, exist_ok=True)
    with open(data / "validation" / "val.jsonl", "w") as fh:
        for (u, i), neg in zip(test[["user", "item"]].itertuples(index=False), negatives, strict=True):
            fh.write(json.dumps({"user": int(u), "item": int(i), "negatives": neg}) + "\n")
    if (raw / "users.dat").exists() and (raw / "movies.dat").exists():
        users = pd.read_csv(raw / "users.dat", sep="::", engine="python", header=None,
                            names=["UserID", "gender", "age", "occupation", "zip"], dtype=str)
        users.insert(0, "user", users.pop("UserID").astype(int) - 1)
        users["zip"] = users["zip"].str[:1]
        (data / "users").mkdir(exist_ok=True)
        users.to_csv(data / "users" / "users.csv", index=False)
        movies = pd.read_csv(raw / "movies.dat", sep="::", engine="python", header=None,
                             names=["movie_id", "title", "genres"], encoding="latin-1")
        movies["decade"] = movies["title"].str.extract(r"\((\d{3})\d\)\s*$")[0].fillna("unk") + "0s"
        mapping = pd.read_csv(ncf / "ml-1m.item_id_map.tsv", sep="\t")
        items = mapping.merge(movies[["movie_id", "genres", "decade"]], on="movie_id", how="left")
        items = items.rename(columns={"ncf_item_id": "item"})[["item", "genres", "decade"]]
        (data / "items").mkdir(exist_ok=True)
        items.to_csv(data / "items" / "items.csv", index=False)
    return data


def train(work: Path, data: Path, name: str, hps: dict[str, Any], catalog: bool = False) -> dict[str, Any]:
    """One `train` job on the prepared channels (``catalog``: the items channel for every algorithm)."""
    base = work / name / "opt_ml"
    (base / "input" / "config").mkdir(parents=True, exist_ok=True)
    channels = ["train", "validation"] + (["users", "items"] if hps["algorithm"] == "wide_deep" else
                                          ["items"] if catalog else [])
    for ch in channels:
        link = base / "input" / "data" / ch
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(data / ch)
    if hps.get("pretrain"):
        # One checkpoint location for every pre-trained run: pre-training phases are keyed by
        # their own settings, so variants of alpha or fine-tuning reuse a finished GMF and MLP.
        for phase in ("gmf", "mlp"):
            shared, link = work / "pretraining" / phase, base / "checkpoints" / phase
            shared.mkdir(parents=True, exist_ok=True)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists() and not link.is_symlink():
                link.symlink_to(shared)
    (base / "input/config/hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hps.items()}))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps({c: {} for c in channels}))
    started = time.monotonic()
    log = (work / f"{name}.log").open("w")
    proc = subprocess.run([str(BIN / "train")], env={**os.environ, "SM_BASE_DIR": str(base)},
                          stdout=log, stderr=subprocess.STDOUT)
    log.close()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed; see {work / f'{name}.log'}")
    manifest = json.loads((base / "model" / "model.json").read_text())
    evaluation = json.loads((base / "output" / "data" / "evaluation.json").read_text())
    history = evaluation.get("history", [])
    per_epoch = [h["seconds"] for h in history if "seconds" in h]
    rates = [h["samples_per_s"] for h in history if "samples_per_s" in h]
    return {"hyperparameters": hps, "metrics": manifest["metrics"],
            "best_epoch": manifest["training"]["best_epoch"],
            "epochs_done": manifest["training"]["epochs_done"],
            "seconds_total": round(time.monotonic() - started, 1),
            "seconds_per_epoch_median": sorted(per_epoch)[len(per_epoch) // 2] if per_epoch else None,
            "samples_per_s_median": sorted(rates)[len(rates) // 2] if rates else None,
            "validation": evaluation.get("validation"),
            "pretraining": evaluation.get("pretraining", {}), "model_dir": str(base / "model")}


def line(label: str, got: dict[str, Any], paper: tuple[float, float] | None) -> str:
    m, v = got["metrics"], got.get("validation") or {}
    return (f"{label:18s} HR@10 {m['hr@10']:.4f} NDCG@10 {m['ndcg@10']:.4f}"
            + (f"  (paper {paper[0]:.4f} / {paper[1]:.4f})" if paper else "")
            + f"  warm HR@10 {m['warm_hr@10']:.4f} NDCG@10 {m['warm_ndcg@10']:.4f}"
            f" ({v.get('warm_cases')} of {v.get('cases')} cases warm; {v.get('cold_candidates')} of "
            f"{v.get('candidates')} candidates cold, {v.get('unknown_candidates')} outside the vocabulary)"
            f"  best epoch {got['best_epoch']}/{got['epochs_done']}, "
            f"{got['seconds_per_epoch_median']}s/epoch, {got['samples_per_s_median']} samples/s, "
            f"total {got['seconds_total']}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=f"{sparse_catalog.NAME},ml-1m")
    parser.add_argument("--only", default="", help="runs to do (default: each dataset's default set)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the ml-1m runs")
    parser.add_argument("--workdir", type=Path, default=RESULTS / "work")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter of the chosen runs (repeatable)")
    parser.add_argument("--tag", default="", help="suffix for the result names (for variants)")
    args, _ = parser.parse_known_args(argv)
    args.workdir = args.workdir.resolve()  # the channels are symlinks, which must not be relative
    results_path = RESULTS / "propensity_quality.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    overrides = dict(kv.split("=", 1) for kv in args.set)
    for dataset in args.datasets.split(","):
        if dataset == sparse_catalog.NAME:
            src = DATA / "movielens-latest-small"
            if not sparse_catalog.available(src):
                print(f"{dataset} skipped: no ratings.csv / movies.csv under {src} "
                      "(set MLSHIP_DATA to the shared data folder)")
                continue
            work = args.workdir / dataset
            work.mkdir(parents=True, exist_ok=True)
            data, table, paper_of = sparse_catalog.prepare(work, src), SPARSE_RUNS, {}
        elif dataset == "ml-1m":
            ncf, raw = DATA / "ml-1m-ncf", DATA / "ml-1m-raw"
            if not (ncf / "ml-1m.train.rating").exists():
                print(f"{dataset} skipped: no NCF ml-1m files under {ncf} "
                      "(set MLSHIP_DATA to the shared data folder)")
                continue
            work = args.workdir / "ml1m"
            work.mkdir(parents=True, exist_ok=True)
            data, table, paper_of = prepare(work, ncf, raw), runs(args.epochs), PAPER
        else:
            raise SystemExit(f"unknown dataset {dataset!r} (ml-latest-small, ml-1m)")
        done = results.setdefault(dataset, {})
        for name in (args.only or DEFAULT_ONLY[dataset]).split(","):
            if name not in table:
                raise SystemExit(f"{dataset} has no run {name!r} (runs: {', '.join(table)})")
            hps = {**table[name], **overrides}
            label = name + (f"_{args.tag}" if args.tag else "")
            if name == "wide_deep" and not (data / "users").exists():
                print("wide_deep skipped: ml-1m-raw users.dat/movies.dat not found")
                continue
            print(f"== {dataset} {label}: {hps}", flush=True)
            got = train(work, data, label, hps, catalog=dataset == sparse_catalog.NAME)
            done[label] = got
            print(f"{dataset} " + line(label, got, paper_of.get(name)), flush=True)
            save("propensity_quality", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
