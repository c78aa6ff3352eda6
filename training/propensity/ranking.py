"""Ranking metrics for the NCF protocol: each held-out positive ranked among sampled negatives.

Scores come as a matrix (n_cases, 1 + n_negatives) whose column 0 is the positive. The rank
of the positive is the number of candidates scoring strictly higher (ties count in its
favour, as NCF's evaluation does): HR@K = rank < K; NDCG@K = 1 / log2(rank + 2) when hit.
"""

from __future__ import annotations

import numpy as np


def positive_ranks(scores: np.ndarray) -> np.ndarray:
    return np.asarray((scores[:, 1:] > scores[:, :1]).sum(axis=1))


def hit_ratio(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks < k)) if ranks.size else float("nan")


def ndcg(ranks: np.ndarray, k: int) -> float:
    if not ranks.size:
        return float("nan")
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(np.mean(gains))


def evaluate(scores: np.ndarray, k: int) -> dict[str, float]:
    """HR@K, NDCG@K, precision@K, and ROC/PR AUC over all candidate scores."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    ranks = positive_ranks(scores)
    labels = np.zeros(scores.shape, dtype=np.int8)
    labels[:, 0] = 1
    flat_scores, flat_labels = scores.ravel(), labels.ravel()
    both = scores.shape[1] > 1 and scores.shape[0] > 0
    return {
        f"hr@{k}": hit_ratio(ranks, k),
        f"ndcg@{k}": ndcg(ranks, k),
        f"precision@{k}": hit_ratio(ranks, k) / k,
        "roc_auc": float(roc_auc_score(flat_labels, flat_scores)) if both else float("nan"),
        "pr_auc": float(average_precision_score(flat_labels, flat_scores)) if both else float("nan"),
    }
