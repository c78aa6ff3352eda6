"""NumPy scorers for the propensity networks: what `serve` runs, with no TensorFlow import.

Training exports each Keras network's weights by layer name into ``weights.npz``; the
architecture (kind, layer sizes) goes into the manifest. Scoring (user, item) index pairs is
then a few gathers and small matrix products, far below a millisecond for a request, and the
same function evaluates the model during training, so what is measured is what is served:
``scores_with_cold_start`` is the one place that says how ids outside the vocabulary score.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Weights = Mapping[str, np.ndarray]


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


def logits(arch: Mapping[str, Any], w: Weights, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    kind = arch["kind"]
    if kind == "popularity":
        return np.asarray(w["popularity"][i], dtype=np.float64)
    if kind == "mf":
        dot = np.einsum("ij,ij->i", w["mf_user/embeddings"][u], w["mf_item/embeddings"][i])
        s = dot + w["user_bias/embeddings"][u, 0] + w["item_bias/embeddings"][i, 0]
        return np.asarray(s * w["out/kernel"][0, 0] + w["out/bias"][0])
    if kind == "gmf":
        h = w["gmf_user/embeddings"][u] * w["gmf_item/embeddings"][i]
        return np.asarray(_dense(h, w, "out", relu=False)[:, 0])
    if kind == "mlp":
        return np.asarray(_dense(_mlp_tower(w, u, i, len(arch["mlp_layers"]) - 1), w, "out", False)[:, 0])
    if kind == "neumf":
        g = w["gmf_user/embeddings"][u] * w["gmf_item/embeddings"][i]
        m = _mlp_tower(w, u, i, len(arch["mlp_layers"]) - 1)
        return np.asarray(_dense(np.concatenate([g, m], axis=1), w, "out", relu=False)[:, 0])
    if kind == "wide_deep":
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
    raise ValueError(f"unknown propensity network {kind!r}")


def scores(arch: Mapping[str, Any], w: Weights, u: np.ndarray, i: np.ndarray,
           chunk: int = 262_144) -> np.ndarray:
    """Probabilities (popularity: normalised counts) for index pairs, in bounded-memory chunks."""
    out = np.empty(u.size, dtype=np.float64)
    for start in range(0, u.size, chunk):
        sl = slice(start, start + chunk)
        z = logits(arch, w, u[sl], i[sl])
        out[sl] = z if arch["kind"] == "popularity" else _sigmoid(z)
    return out


COLD_START_RULE = "unknown users get item popularity; unknown items score 0 (flagged cold_start)"


def scores_with_cold_start(arch: Mapping[str, Any], weights: Weights, popularity: np.ndarray,
                           u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Scores of index pairs as `serve` gives them, with -1 for an id outside the vocabulary.

    The cold-start rule (``COLD_START_RULE``): a pair with an unknown user and a known item
    scores the item's popularity; a pair with an unknown item scores 0. Validation scores its
    cold candidates through this function, so they are measured as they are served.
    """
    u, i = np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)
    if arch["kind"] == "popularity":
        weights = {**weights, "popularity": popularity}
    out = np.zeros(u.size, dtype=np.float64)
    known = (u >= 0) & (i >= 0)
    if known.all():
        return scores(arch, weights, u, i)
    if known.any():
        out[known] = scores(arch, weights, u[known], i[known])
    cold_user = (u < 0) & (i >= 0)
    out[cold_user] = popularity[i[cold_user]]
    return out
