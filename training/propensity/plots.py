"""Training curves for the propensity models: loss and validation HR/NDCG per epoch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def training_curves(phases: Mapping[str, list[dict[str, Any]]], folder: Path, title: str, k: int
                    ) -> list[str]:
    """One figure for every phase (NeuMF's GMF and MLP pre-training beside its fine-tuning)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for n, (phase, history) in enumerate(phases.items()):
        colour = f"C{n}"
        # Epoch 0 (the pre-trained start of NeuMF) has validation metrics but no training loss.
        trained = [h for h in history if "train:loss" in h]
        left.plot([int(h["epoch"]) for h in trained], [h["train:loss"] for h in trained], marker="o",
                  color=colour, label=phase)
        for name, style in ((f"validation:hr@{k}", "-"), (f"validation:ndcg@{k}", "--")):
            rows = [h for h in history if name in h]
            if rows:
                right.plot([int(h["epoch"]) for h in rows], [h[name] for h in rows], marker="o",
                           linestyle=style, color=colour, label=f"{phase} {name.split(':')[1]}")
    left.set(xlabel="epoch", ylabel="training loss (BCE)", title=f"{title}: loss")
    right.set(xlabel="epoch", ylabel="metric", title=f"{title}: validation")
    left.legend(fontsize="small")
    if right.lines:
        right.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(folder / "training_curves.png")
    plt.close(fig)
    return ["training_curves.png"]
