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
import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from training import metrics as metric_lines
from training.checkpoints import CheckpointStore, StopFlag
from training.data import read_channel
from training.environment import TrainingEnvironment
from training.errors import UserError
from training.hyperparameters import Hyperparameter as HP
from training.hyperparameters import table
from training.manifest import ModelWriter
from training.propensity import data as pdata
from training.propensity import plots, ranking, scoring, side, validation
from training.propensity.trainer import LoopConfig, fit

log = logging.getLogger("training.propensity")
ALGORITHMS = ("popularity", "mf", "gmf", "mlp", "neumf", "wide_deep")

COMMON = (
    HP("algorithm", str, "neumf", "Which propensity model to train.", choices=ALGORITHMS),
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
NEURAL = (
    HP("epochs", int, 20, "Training epochs.", min=1, max=1000, tunable=True),
    HP("batch_size", int, 1024, "Mini-batch size.", min=1, max=1_000_000, tunable=True),
    HP("learning_rate", float, 0.001, "Learning rate.", min=1e-6, max=10.0, tunable=True),
    HP("lr_decay", float, 1.0, "Learning rate multiplied by this after every epoch (1 = constant).",
       min=0.05, max=1.0, tunable=True),
    HP("optimizer", str, "adam", "Optimiser.", choices=("adam", "sgd", "adagrad")),
    HP("ema", float, 0.0, "Moving average of the weights, momentum per step (e.g. 0.999; 0 = off): each "
       "epoch is evaluated and continued from the averaged weights.", min=0.0, max=0.99999, tunable=True),
    HP("negatives", int, 4, "Negatives sampled per positive, resampled every epoch.", min=1, max=100,
       tunable=True),
    HP("factors", int, 8, "Predictive factors (GMF/MF embedding size; last MLP layer).", min=1,
       max=1024, tunable=True),
    HP("mlp_layers", str, "", "MLP widths, e.g. '64,32,16,8' (default: 4f,2f,f as in NCF; the "
       "first is the concatenated embedding)."),
    HP("reg", float, 0.0, "L2 regularisation of embeddings.", min=0.0, max=1.0, tunable=True),
    HP("patience", int, 5, "Early stopping: epochs without improvement (0 = off).", min=0, max=1000),
    HP("monitor", str, "ndcg", "Validation metric for early stopping and the best epoch.",
       choices=("ndcg", "hr")),
)
PRETRAIN = (
    HP("pretrain", bool, False, "Pre-train GMF and MLP, then initialise NeuMF from them (NCF paper)."),
    HP("pretrain_epochs", int, 0, "Epochs of each pre-training phase (0 = epochs).", min=0, max=1000),
    HP("alpha", float, 0.5, "Weight of GMF vs MLP in the pre-trained output layer.", min=0.0, max=1.0),
    HP("finetune_optimizer", str, "sgd", "Optimiser for NeuMF after pre-training (the paper uses SGD).",
       choices=("adam", "sgd", "adagrad")),
    HP("finetune_learning_rate", float, 0.001, "Learning rate after pre-training.", min=1e-6, max=10.0),
)
WIDE_DEEP = (
    HP("user_features_id", str, "", "Id column of the 'users' channel (default: its first column)."),
)


class PropensityAlgorithm:
    family: ClassVar[str] = "propensity"
    name: ClassVar[str]
    hyperparameters: ClassVar[tuple[HP, ...]] = ()


class Popularity(PropensityAlgorithm):
    """Items ranked by their number of interactions (ItemPop)."""

    name = "popularity"


class MatrixFactorisation(PropensityAlgorithm):
    """Dot-product MF with biases, logistic loss and sampled negatives (the strong baseline)."""

    name = "mf"
    hyperparameters = NEURAL


class GMF(PropensityAlgorithm):
    name = "gmf"
    hyperparameters = NEURAL


class MLP(PropensityAlgorithm):
    name = "mlp"
    hyperparameters = NEURAL


class NeuMF(PropensityAlgorithm):
    name = "neumf"
    hyperparameters = NEURAL + PRETRAIN


class WideDeep(PropensityAlgorithm):
    name = "wide_deep"
    hyperparameters = NEURAL + WIDE_DEEP


def declared(algorithm: type[PropensityAlgorithm]) -> tuple[HP, ...]:
    return COMMON + tuple(algorithm.hyperparameters)


def doc_tables() -> dict[str, str]:
    return {"hp-propensity-common": table(COMMON), "hp-propensity-neural": table(NEURAL),
            "hp-propensity-pretrain": table(PRETRAIN), "hp-propensity-wide-deep": table(WIDE_DEEP)}


def _mlp_layers(params: dict[str, Any]) -> list[int]:
    if params.get("mlp_layers"):
        try:
            widths = [int(v) for v in str(params["mlp_layers"]).replace(" ", "").split(",") if v]
        except ValueError:
            raise UserError(f"mlp_layers must be comma-separated integers, got {params['mlp_layers']!r}"
                            ) from None
        if len(widths) < 2 or widths[0] % 2 or any(w < 1 for w in widths):
            raise UserError("mlp_layers needs >= 2 positive widths and an even first width "
                            "(the user and item embeddings are half of it each)")
        return widths
    f = int(params["factors"])
    return [4 * f, 2 * f, f]


def _setup_tensorflow(params: dict[str, Any]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    threads = params["threads"] or (os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        pass  # already initialised in this process (tests); the first setting stands
    keras.utils.set_random_seed(params["seed"])
    if params["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    log.info("TensorFlow %s: %d intra-op threads, deterministic=%s", tf.__version__, threads,
             params["deterministic"])


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
    monitor = f"{params.get('monitor', 'ndcg')}@{k}"


    def evaluate_as(net: dict[str, Any]) -> Callable[[scoring.Weights], dict[str, float]]:
        """The validation scorer of a network (nothing to score without validation cases)."""
        if cases is None:
            return lambda w: {}
        return validation.evaluator(net, cases, k, popularity)

    arch: dict[str, Any] = {"kind": name}
    weights: dict[str, np.ndarray]
    result_info: dict[str, Any] = {}
    keras_model = None
    if name == "popularity":
        weights = {}
        best: dict[str, float] = evaluate_as(arch)({})
        result_info = {"epochs_done": 0, "best_epoch": 0, "history": []}
    else:
        _setup_tensorflow(params)
        from training.propensity import networks

        arch.update({"factors": params["factors"], "mlp_layers": _mlp_layers(params),
                     "reg": params["reg"]})
        side_tables = None
        if name == "wide_deep":
            uenc = side.encode(_read(env, "users", params, False) if "users" in env.channels else None,
                               params["user_features_id"], users, "users")
            ienc = side.encode(items_table, params["item_features_id"], items, "items")
            arch.update({"user_categorical": uenc.n_categorical, "item_categorical": ienc.n_categorical,
                         "user_feature_names": uenc.names, "item_feature_names": ienc.names,
                         "mlp_layers": _mlp_layers(params)[1:] or [params["factors"]]})
            side_tables = {"user_features": uenc.matrix, "item_features": ienc.matrix}
            log.info("wide & deep side features: users %s, items %s", side.summary(uenc),
                     side.summary(ienc))
        base_cfg = dict(batch_size=params["batch_size"], negatives=params["negatives"],
                        patience=params["patience"], monitor=monitor, seed=params["seed"],
                        lr_decay=params["lr_decay"], ema=params["ema"])
        pretrained = None
        if name == "neumf" and params["pretrain"]:
            pre_epochs = params["pretrain_epochs"] or params["epochs"]
            pretrained = {}
            for phase in ("gmf", "mlp"):
                sub = {**arch, "kind": phase}
                model = networks.build(sub, len(users), len(items))
                res = fit(model, sub, train, seen, len(items),
                          LoopConfig(epochs=pre_epochs, learning_rate=params["learning_rate"],
                                     optimizer=params["optimizer"], phase=phase, **base_cfg),
                          stop, _store(env, params, phase), evaluate_as(sub), metric_lines.emit)
                pretrained[phase] = model
                result_info[f"pretrain_{phase}"] = {
                    "best_epoch": res.best_epoch, "best": res.best, "resumed_from": res.resumed_from,
                    "history": res.history}
                if stop.is_set:
                    break
        keras_model = networks.build(arch, len(users), len(items), side_tables)
        optimizer, lr = params["optimizer"], params["learning_rate"]
        warm = pretrained if pretrained is not None and not stop.is_set else None
        if warm is not None:
            networks.load_from_pretrained(keras_model, warm["gmf"], warm["mlp"], params["alpha"])
            optimizer, lr = params["finetune_optimizer"], params["finetune_learning_rate"]
            log.info("NeuMF initialised from pre-trained GMF and MLP (alpha %.2f); fine-tuning with %s",
                     params["alpha"], optimizer)
        res = fit(keras_model, arch, train, seen, len(items),
                  LoopConfig(epochs=params["epochs"], learning_rate=lr, optimizer=optimizer, phase="main",
                             score_start=warm is not None, **base_cfg),
                  stop, _store(env, params, "main"), evaluate_as(arch), metric_lines.emit)
        best = res.best
        weights = networks.export(keras_model)
        result_info.update({"epochs_done": res.epochs_done, "best_epoch": res.best_epoch,
                            "history": res.history, "stopped_early": res.stopped_early,
                            "resumed_from": res.resumed_from})

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
            "family": "propensity", "algorithm": name, "model_name": "propensity", "files": files,
            "architecture": arch, "top_k": k,
            "vocabulary": {"users": len(users), "items": len(items)},
            "cold_start": scoring.COLD_START_RULE,
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
