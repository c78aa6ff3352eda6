"""NumPy scorers of the propensity networks: what `serve` runs, with no TensorFlow import.

Training exports each Keras network's weights by layer name into ``weights.npz`` (with the
items' ``popularity``); the architecture (kind, layer sizes) goes into the manifest. Scoring
(user, item) index pairs is then a few gathers and small matrix products, far below a
millisecond for a request, and the same scorer evaluates the model during training, so what is
measured is what is served. Each network kind is one ``PairScorer`` subclass; defining one
registers its kind, and the manifest names the class `serve` loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

Weights = Mapping[str, np.ndarray]
COLD_START_RULE = "unknown users get item popularity; unknown items score 0 (flagged cold_start)"
KINDS: dict[str, type[PairScorer]] = {}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -60, 60))))


def _dense(x: np.ndarray, w: Weights, name: str, relu: bool) -> np.ndarray:
    y = x @ w[f"{name}/kernel"] + w[f"{name}/bias"]
    return np.maximum(y, 0.0) if relu else y


def _mlp_tower(w: Weights, u: np.ndarray, i: np.ndarray, layers: int) -> np.ndarray:
    h = np.concatenate([w["mlp_user/embeddings"][u], w["mlp_item/embeddings"][i]], axis=1)
    for n in range(layers):
        h = _dense(h, w, f"mlp_{n}", relu=True)
    return h


class PairScorer:
    """Scores of (user index, item index) pairs from a network's exported weights."""

    kind: ClassVar[str]
    sigmoid: ClassVar[bool] = True  # logits become probabilities (popularity stays a share)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        KINDS[cls.kind] = cls

    def __init__(self, arch: Mapping[str, Any], weights: Weights) -> None:
        self.arch = arch
        self.weights = weights

    @property
    def popularity(self) -> np.ndarray:
        return np.asarray(self.weights["popularity"])

    def logits(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def scores(self, u: np.ndarray, i: np.ndarray, chunk: int = 262_144) -> np.ndarray:
        """Probabilities (popularity: normalised counts) for index pairs, in bounded-memory chunks."""
        out = np.empty(u.size, dtype=np.float64)
        for start in range(0, u.size, chunk):
            sl = slice(start, start + chunk)
            z = self.logits(u[sl], i[sl])
            out[sl] = _sigmoid(z) if self.sigmoid else z
        return out

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any], threads: int = 1) -> PairScorer:
        with np.load(folder / "weights.npz") as data:
            weights = {k: data[k] for k in data.files}
        return cls(dict(manifest["architecture"]), weights)


def legacy_scorer(manifest: dict[str, Any]) -> type[PairScorer]:
    """The scorer of a manifest written before manifests named it: by its network kind."""
    return KINDS[str(manifest["architecture"]["kind"])]


def scorer_for(arch: Mapping[str, Any], weights: Weights) -> PairScorer:
    """The scorer of an architecture's kind (training evaluates every epoch through it)."""
    return KINDS[str(arch["kind"])](arch, weights)


class PopularityScorer(PairScorer):
    kind = "popularity"
    sigmoid = False

    def logits(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.asarray(self.weights["popularity"][i], dtype=np.float64)


class MFScorer(PairScorer):
    kind = "mf"

    def logits(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        w = self.weights
        dot = np.einsum("ij,ij->i", w["mf_user/embeddings"][u], w["mf_item/embeddings"][i])
        s = dot + w["user_bias/embeddings"][u, 0] + w["item_bias/embeddings"][i, 0]
        return np.asarray(s * w["out/kernel"][0, 0] + w["out/bias"][0])


class GMFScorer(PairScorer):
    kind = "gmf"

    def logits(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        h = self.weights["gmf_user/embeddings"][u] * self.weights["gmf_item/embeddings"][i]
        return np.asarray(_dense(h, self.weights, "out", relu=False)[:, 0])


class MLPScorer(PairScorer):
    kind = "mlp"

    def logits(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        tower = _mlp_tower(self.weights, u, i, len(self.arch["mlp_layers"]) - 1)
        return np.asarray(_dense(tower, self.weights, "out", False)[:, 0])


class NeuMFScorer(PairScorer):
    kind = "neumf"

    def logits(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        w = self.weights
        g = w["gmf_user/embeddings"][u] * w["gmf_item/embeddings"][i]
        m = _mlp_tower(w, u, i, len(self.arch["mlp_layers"]) - 1)
        return np.asarray(_dense(np.concatenate([g, m], axis=1), w, "out", relu=False)[:, 0])


class WideDeepScorer(PairScorer):
    kind = "wide_deep"

    def logits(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        w, arch = self.weights, self.arch
        uf = w["user_features/embeddings"][u]
        itf = w["item_features/embeddings"][i]
        ucat = uf[:, : int(arch["user_categorical"])]
        icat = itf[:, : int(arch["item_categorical"])]
        cross = (ucat[:, :, None] * icat[:, None, :]).reshape(u.size, -1)
        wide = np.concatenate([uf, itf, cross], axis=1) @ w["wide/kernel"] + w["wide/bias"]
        deep = np.concatenate([w["deep_user/embeddings"][u], w["deep_item/embeddings"][i], uf, itf],
                              axis=1)
        for n in range(len(arch["mlp_layers"])):
            deep = _dense(deep, w, f"deep_{n}", relu=True)
        deep = deep @ w["deep_out/kernel"] + w["deep_out/bias"]
        return np.asarray((wide + deep)[:, 0])


def scores_with_cold_start(scorer: PairScorer, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Scores of index pairs as `serve` gives them, with -1 for an id outside the vocabulary.

    The cold-start rule (``COLD_START_RULE``): a pair with an unknown user and a known item
    scores the item's popularity; a pair with an unknown item scores 0. Validation scores its
    cold candidates through this function, so they are measured as they are served.
    """
    u, i = np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)
    known = (u >= 0) & (i >= 0)
    if known.all():
        return scorer.scores(u, i)
    out = np.zeros(u.size, dtype=np.float64)
    if known.any():
        out[known] = scorer.scores(u[known], i[known])
    cold_user = (u < 0) & (i >= 0)
    out[cold_user] = scorer.popularity[i[cold_user]]
    return out
