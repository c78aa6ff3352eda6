"""Training curves for the propensity models: loss and validation HR/NDCG per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def training_curves(history: list[dict[str, Any]], folder: Path, title: str, k: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(h["epoch"]) for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    left.plot(epochs, [h["train:loss"] for h in history], marker="o")
    left.set(xlabel="epoch", ylabel="training loss (BCE)", title=f"{title}: loss")
    for name in (f"validation:hr@{k}", f"validation:ndcg@{k}"):
        if name in history[0]:
            right.plot(epochs, [h[name] for h in history], marker="o", label=name.split(":")[1])
    right.set(xlabel="epoch", ylabel="metric", title=f"{title}: validation")
    right.legend()
    fig.tight_layout()
    fig.savefig(folder / "training_curves.png")
    plt.close(fig)
    return ["training_curves.png"]
