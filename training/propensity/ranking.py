"""Ranking metrics for the NCF protocol: each held-out positive ranked among negatives.

Scores come as a matrix (n_cases, 1 + n_negatives) whose column 0 is the positive. The rank
of the positive is the number of negatives scoring at least as high (``TIE_RULE``): ties go
against the positive, as in the NCF authors' evaluation code, so a model that scores many
candidates alike (integer popularity counts, cold items scoring 0) is not flattered.
HR@K = rank < K; NDCG@K = 1 / log2(rank + 2) when hit.

``warm`` selects the cases whose user and candidates all have a training interaction; their
metrics are reported beside the all-case ones as ``warm_<metric>``. ``repeats`` marks
negatives that are the positive item itself (the NCF ml-1m files have 156): they are not
competitors, as in NCF's code, where the positive replaces them in its dict of scores.
"""

from __future__ import annotations

import numpy as np

TIE_RULE = ("pessimistic: a negative scoring the same as the held-out positive ranks above it "
            "(as in the NCF authors' evaluate.py, where the positive, inserted last, loses ties in "
            "heapq.nlargest); a negative that is the positive item itself does not count")


def positive_ranks(scores: np.ndarray, repeats: np.ndarray | None = None) -> np.ndarray:
    """Negatives scoring >= the positive, per case (a NaN on either side counts as >=)."""
    above = ~(scores[:, 1:] < scores[:, :1])
    if repeats is not None:
        above &= ~repeats
    return np.asarray(above.sum(axis=1))


def hit_ratio(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks < k)) if ranks.size else float("nan")


def ndcg(ranks: np.ndarray, k: int) -> float:
    if not ranks.size:
        return float("nan")
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(np.mean(gains))


def _metrics(scores: np.ndarray, k: int, repeats: np.ndarray | None) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    ranks = positive_ranks(scores, repeats)
    labels = np.zeros(scores.shape, dtype=np.int8)
    labels[:, 0] = 1
    counted = np.ones(scores.shape, dtype=bool)
    if repeats is not None:
        counted[:, 1:] = ~repeats
    flat_scores, flat_labels = scores[counted], labels[counted]
    both = scores.shape[1] > 1 and scores.shape[0] > 0 and 0 < flat_labels.sum() < flat_labels.size
    return {
        f"hr@{k}": hit_ratio(ranks, k),
        f"ndcg@{k}": ndcg(ranks, k),
        f"precision@{k}": hit_ratio(ranks, k) / k,
        "roc_auc": float(roc_auc_score(flat_labels, flat_scores)) if both else float("nan"),
        "pr_auc": float(average_precision_score(flat_labels, flat_scores)) if both else float("nan"),
    }


def evaluate(scores: np.ndarray, k: int, warm: np.ndarray | None = None,
             repeats: np.ndarray | None = None) -> dict[str, float]:
    """HR@K, NDCG@K, precision@K, ROC/PR AUC over all candidates; the same over warm cases."""
    found = _metrics(scores, k, repeats)
    if warm is not None:
        sub = _metrics(scores[warm], k, None if repeats is None else repeats[warm])
        found.update({f"warm_{name}": value for name, value in sub.items()})
    return found
