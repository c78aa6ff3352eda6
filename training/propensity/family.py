"""The propensity family, declared once: its algorithms, HPO metrics, CI's synthetic data and
hyperparameters, the gate's floors and its README tables (training/families.py reads it)."""

from __future__ import annotations

from training.families import Family

_ALGORITHMS = "training.propensity.algorithms"

FAMILY = Family(
    name="propensity",
    algorithms={"popularity": f"{_ALGORITHMS}:Popularity", "mf": f"{_ALGORITHMS}:MatrixFactorisation",
                "gmf": f"{_ALGORITHMS}:GMF", "mlp": f"{_ALGORITHMS}:MLP", "neumf": f"{_ALGORITHMS}:NeuMF",
                "wide_deep": f"{_ALGORITHMS}:WideDeep"},
    default_algorithm="neumf",
    # every validation case; warm_* the warm cases only (user and every candidate with a training
    # interaction), see training/propensity/validation.py
    objectives={
        "validation:hr@10": "Maximize",
        "validation:ndcg@10": "Maximize",
        "validation:roc_auc": "Maximize",
        "validation:pr_auc": "Maximize",
        "validation:precision@10": "Maximize",
        "validation:warm_hr@10": "Maximize",
        "validation:warm_ndcg@10": "Maximize",
        "validation:warm_roc_auc": "Maximize",
        "validation:warm_pr_auc": "Maximize",
        "validation:warm_precision@10": "Maximize",
        "train:loss": "Minimize",
    },
    # on the `step=final` line: published, so a job's metrics show them, but no objective
    counts=("validation:cases", "validation:cold_cases", "validation:cold_candidates"),
    synthetic="training.propensity.synth:channels",
    gate={"ndcg@10": 0.10, "hr@10": 0.20},
    # the network the README measures (NeuMF), kept small enough for a CI agent
    ci_hyperparameters={"algorithm": "neumf", "factors": "16", "epochs": "6", "batch_size": "512",
                        "patience": "3"},
    docs="training.propensity.task:doc_tables",
)
