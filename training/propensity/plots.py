"""Training curves for the propensity models: loss and validation HR/NDCG per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def training_curves(history: list[dict[str, Any]], folder: Path, title: str, k: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    # Epoch 0 (the pre-trained start of NeuMF) has validation metrics but no training loss.
    trained = [h for h in history if "train:loss" in h]
    left.plot([int(h["epoch"]) for h in trained], [h["train:loss"] for h in trained], marker="o")
    left.set(xlabel="epoch", ylabel="training loss (BCE)", title=f"{title}: loss")
    for name in (f"validation:hr@{k}", f"validation:ndcg@{k}"):
        rows = [h for h in history if name in h]
        if rows:
            right.plot([int(h["epoch"]) for h in rows], [h[name] for h in rows], marker="o",
                       label=name.split(":")[1])
    right.set(xlabel="epoch", ylabel="metric", title=f"{title}: validation")
    right.legend()
    fig.tight_layout()
    fig.savefig(folder / "training_curves.png")
    plt.close(fig)
    return ["training_curves.png"]
