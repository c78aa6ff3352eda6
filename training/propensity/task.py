"""The propensity training job: interactions -> vocabularies -> split -> fit -> model directory.

Algorithms (hyperparameter ``algorithm``): popularity, mf, gmf, mlp, neumf (optionally with
GMF + MLP pre-training, as in the NCF paper) and wide_deep (with ``users``/``items`` feature
channels). Validation follows the NCF protocol: each held-out positive is ranked among
``eval_negatives`` sampled (or given) negatives; HR@K and NDCG@K each epoch, over every case
(cold ones scored by the serving cold-start rule) and over the warm ones (see validation.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from modelformat import scorers
from modelformat.manifest import ModelWriter
from modelformat.propensity.scoring import COLD_START_RULE, Weights
from training import metrics as metric_lines
from training import registry
from training.checkpoints import CheckpointStore, StopFlag
from training.data import read_channel
from training.environment import TrainingEnvironment
from training.errors import UserError
from training.hyperparameters import Hyperparameter as HP
from training.hyperparameters import table
from training.propensity import data as pdata
from training.propensity import plots, ranking, validation
from training.propensity.algorithms import NEURAL, PRETRAIN, WIDE_DEEP, Job, PropensityAlgorithm
from training.propensity.family import FAMILY

log = logging.getLogger("training.propensity")
_SHARED = (
    HP("user_column", str, "", "User id column (default: user/user_id/... or column 0)."),
    HP("item_column", str, "", "Item id column (default: item/item_id/... or column 1)."),
    HP("label_column", str, "", "Optional label/rating column: rows with a value <= 0 are not positives."),
    HP("timestamp_column", str, "", "Optional time column, used for leave-one-out and time splits."),
    HP("csv_header", str, "auto", "Whether CSV files start with a header row.",
       choices=("auto", "true", "false")),
    HP("csv_delimiter", str, "auto", "CSV field separator.", choices=("auto", ",", "\t", ";", "|")),
    HP("validation", str, "auto", "channel (the validation channel), leave_one_out, time or none; "
       "auto = channel if given, else leave_one_out.",
       choices=("auto", "channel", "leave_one_out", "time", "none")),
    HP("validation_fraction", float, 0.1, "Latest share of interactions held out when validation=time.",
       min=0.01, max=0.5),
    HP("eval_negatives", int, 99, "Sampled negatives each held-out positive is ranked against.",
       min=1, max=10_000),
    HP("top_k", int, 10, "K of HR@K, NDCG@K and precision@K; default K of top-K serving.", min=1, max=1000),
    HP("seed", int, 0, "Random seed (negatives, initialisation, splits).", min=0, max=2**31 - 1),
    HP("threads", int, 0, "TensorFlow intra-op threads (0 = all CPUs).", min=0, max=1024),
    HP("deterministic", bool, True, "Make TensorFlow ops deterministic (same seed, same model)."),
    HP("item_features_id", str, "", "Id column of the optional 'items' channel, whose ids join the item "
       "vocabulary (the catalog; wide_deep also reads its other columns as features). Default: its "
       "first column."),
)
def common() -> tuple[HP, ...]:
    """Hyperparameters of every propensity algorithm; the algorithm choices come from the registry."""
    return (registry.algorithm_hyperparameter(FAMILY.name, FAMILY.default_algorithm,
                                              "Which propensity model to train."), *_SHARED)


def declared(algorithm: type[PropensityAlgorithm]) -> tuple[HP, ...]:
    return common() + tuple(algorithm.hyperparameters)


def doc_tables() -> dict[str, str]:
    """The README's hyperparameter tables of this family (its ``docs`` entry point)."""
    return {"hp-propensity-common": table(common()), "hp-propensity-neural": table(NEURAL),
            "hp-propensity-pretrain": table(PRETRAIN), "hp-propensity-wide-deep": table(WIDE_DEEP)}


def _read(env: TrainingEnvironment, channel: str, params: dict[str, Any], required: bool
          ) -> pd.DataFrame | None:
    got = read_channel(env.channel_dir(channel), channel, env.content_type(channel), params["csv_header"],
                       frozenset(pdata.USER_NAMES + pdata.ITEM_NAMES), required=required,
                       delimiter=params["csv_delimiter"])
    return None if got is None else got.frame


def _validation_channel(env: TrainingEnvironment, params: dict[str, Any]) -> validation.ValidationChannel:
    frame = _read(env, "validation", params, required=True)
    assert frame is not None
    u_raw, i_raw, _ = pdata.positives(frame, params, "validation")
    negatives = None
    if "negatives" in frame.columns:
        negatives = [v if isinstance(v, list) else str(v).replace("|", " ").split()
                     for v in frame.loc[u_raw.index, "negatives"]]
    return validation.ValidationChannel(u_raw, i_raw, negatives)


def _catalog(items_table: pd.DataFrame | None, params: dict[str, Any]) -> pd.Series | None:
    """The ids of the ``items`` channel: they join the item vocabulary (the catalog)."""
    if items_table is None:
        return None
    table = items_table.set_axis([str(c) for c in items_table.columns], axis=1)
    column = params["item_features_id"]
    if column not in table.columns:
        column = table.columns[0]
    ids = table[column]
    if ids.isna().any():
        raise UserError(f"The 'items' channel has rows without an id (column '{column}')")
    return ids


def _split(env: TrainingEnvironment, params: dict[str, Any], frame: pd.DataFrame,
           items_table: pd.DataFrame | None) -> validation.Split:
    """Resolve the validation mode and build vocabularies, training split and cases from the channels."""
    mode = params["validation"]
    has_channel = "validation" in env.channels
    if mode == "auto":
        mode = "channel" if has_channel else "leave_one_out"
    if mode == "channel" and not has_channel:
        raise UserError("validation=channel but the job has no 'validation' channel")
    u_raw, i_raw, ts = pdata.positives(frame, params, "train")
    channel = _validation_channel(env, params) if mode == "channel" else None
    return validation.split(mode, u_raw, i_raw, ts, _catalog(items_table, params), channel,
                            negatives=params["eval_negatives"], fraction=params["validation_fraction"],
                            seed=params["seed"])


def run(env: TrainingEnvironment, params: dict[str, Any], algorithm_cls: type[PropensityAlgorithm],
        stop: StopFlag) -> dict[str, Any]:
    t0 = time.monotonic()
    name = algorithm_cls.name
    log.info("reading channel 'train'", extra={"stage": "read"})
    frame = _read(env, "train", params, required=True)
    assert frame is not None
    items_table = _read(env, "items", params, False) if "items" in env.channels else None
    data = _split(env, params, frame, items_table)
    users, items, train, cases = data.users, data.items, data.train, data.cases
    log.info("%d interactions (%d for training), %d users, %d items%s", data.interactions, len(train),
             len(users), len(items), "" if items_table is None else " (with the 'items' channel's catalog)")
    if cases is not None:
        log.info("validation (%s): %s", data.source, validation.summary(cases))
    seen = pdata.SeenItems(train.users, train.items, len(users), len(items))
    popularity = np.bincount(train.items, minlength=len(items)).astype(np.float64)
    popularity /= max(popularity.max(), 1.0)
    k = params["top_k"]


    def evaluate_as(net: dict[str, Any]) -> Callable[[Weights], dict[str, float]]:
        """The validation scorer of a network (nothing to score without validation cases)."""
        if cases is None:
            return lambda w: {}
        return validation.evaluator(net, cases, k, popularity)

    job = Job(params=params, users=users, items=items, train=train, seen=seen, stop=stop,
              evaluate_as=evaluate_as, store=lambda phase: _store(env, params, phase),
              read=lambda channel: _read(env, channel, params, False) if channel in env.channels else None,
              items_table=items_table)
    trained = algorithm_cls(params).train(job)
    arch, weights, best, result_info = trained.arch, trained.weights, trained.best, trained.info
    keras_model = trained.keras_model

    if best and cases is not None:
        metric_lines.emit({**{f"validation:{m}": v for m, v in best.items()},
                           **validation.metric_counts(cases)}, "final")
    out_dir = env.paths.output_data_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    history = result_info.get("history", [])
    n_cases = 0 if cases is None else cases.counts["cases"]
    summary = {"family": "propensity", "algorithm": name, "validation_source": data.source,
               "validation_cases": n_cases, "validation": None if cases is None else validation.report(cases),
               "metrics": best, "history": history,
               "pretraining": {k_: v for k_, v in result_info.items() if k_.startswith("pretrain_")}}
    (out_dir / "evaluation.json").write_text(json.dumps(summary, indent=2, default=str))
    curves = {f"{p} pre-training": result_info[f"pretrain_{p}"]["history"] for p in ("gmf", "mlp")
              if result_info.get(f"pretrain_{p}", {}).get("history")}
    if history:
        curves[name] = history
    plotted = plots.training_curves(curves, out_dir, name, k) if curves else []

    with ModelWriter(env.paths.model_dir) as writer:
        st = writer.staging
        np.savez(st / "weights.npz", popularity=popularity, **weights)  # type: ignore[arg-type]
        pdata.write_json(st / "users.json", users.ids)
        pdata.write_json(st / "items.json", items.ids)
        history_all = data.history
        pdata.SeenItems(history_all.users, history_all.items, len(users), len(items)).save(st / "seen.npz")
        files = ["weights.npz", "users.json", "items.json", "seen.npz"]
        if keras_model is not None:
            keras_model.save(st / "model.keras")
            files.append("model.keras")
        examples = [{"user": users.ids[int(train.users[0])], "item": items.ids[int(train.items[0])]},
                    {"user": users.ids[int(train.users[-1])], "k": min(k, len(items))}]
        pdata.write_json(st / "warmup.json", examples)
        files.append("warmup.json")
        manifest = {
            "family": "propensity", "algorithm": name,
            "scorer": scorers.reference(algorithm_cls.scorer_class), "model_name": "propensity",
            "files": files,
            "architecture": arch, "top_k": k,
            "vocabulary": {"users": len(users), "items": len(items)},
            "cold_start": COLD_START_RULE,
            "hyperparameters": params, "metrics": best,
            "training": {"interactions": data.interactions, "train_interactions": len(train),
                         "validation": data.source, "validation_cases": n_cases,
                         "validation_counts": None if cases is None else cases.counts,
                         "tie_rule": ranking.TIE_RULE,
                         "epochs_done": result_info.get("epochs_done"),
                         "best_epoch": result_info.get("best_epoch"),
                         "stopped_early": result_info.get("stopped_early", False),
                         "resumed_from": result_info.get("resumed_from"),
                         "seconds": round(time.monotonic() - t0, 1), "job_name": env.job_name,
                         "plots": plotted},
        }
        writer.commit(manifest)
    log.info("model saved to %s (%s)", env.paths.model_dir, name, extra={"stage": "done"})
    return manifest


# What a pre-training phase's result depends on: everything but the NeuMF-only settings.
_FINETUNE_ONLY = ("pretrain", "pretrain_epochs", "alpha", "finetune_optimizer", "finetune_learning_rate")


def _store(env: TrainingEnvironment, params: dict[str, Any], phase: str) -> CheckpointStore:
    """Checkpoints of one phase, keyed by the settings that phase depends on.

    A GMF or MLP pre-training phase is keyed without the fine-tuning settings and lives in a
    folder of its own key, so jobs that share a checkpoint location and differ only in
    ``alpha`` or the fine-tuning optimiser reuse a finished pre-training.
    """
    import hashlib

    def digest(obj: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]

    if phase == "main":
        return CheckpointStore(env.checkpoint_dir / phase, digest({"p": params, "phase": phase}))
    own = {k: v for k, v in params.items() if k not in _FINETUNE_ONLY}
    own["epochs"] = params["pretrain_epochs"] or params["epochs"]
    key = digest({"p": own, "phase": phase})
    return CheckpointStore(env.checkpoint_dir / phase / key, key)
