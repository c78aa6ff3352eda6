"""The gender family, declared once: its algorithms, HPO metrics, CI's synthetic data, the gate's
floor and its README tables (training/families.py reads it)."""

from __future__ import annotations

from training.families import Family

FAMILY = Family(
    name="gender",
    algorithms={"xgboost": "training.gender.algorithms:XGBoostClassifier",
                "logreg": "training.gender.algorithms:LogisticRegressionClassifier"},
    default_algorithm="xgboost",
    objectives={
        "validation:roc_auc": "Maximize",
        "validation:pr_auc": "Maximize",
        "validation:logloss": "Minimize",
        "validation:accuracy": "Maximize",
        "validation:precision": "Maximize",
        "validation:recall": "Maximize",
        "validation:f1": "Maximize",
        "train:logloss": "Minimize",
    },
    synthetic="training.gender.synth:channels",
    gate={"roc_auc": 0.60},
    ci_hyperparameters={},  # the image's defaults (XGBoost)
    docs="training.gender.task:doc_tables",
    trains_by_default=True,  # the image's contract: a job without `algorithm` trains XGBoost
)
