"""The gender training job: channels -> features -> fit -> evaluate -> model directory."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from container.resources import available_cpus
from modelformat import scorers
from modelformat.errors import DataError
from modelformat.gender.contributions import EXPLAINER_BASELINE
from modelformat.gender.features import (
    RAW_FIELDS,
    DevicePipeline,
    NumericPipeline,
    Pipeline,
    is_raw_frame,
    save_pipeline,
)
from modelformat.gender.operating import MANIFEST_KEY
from modelformat.manifest import ModelWriter
from training import metrics as metric_lines
from training import registry
from training.checkpoints import CheckpointStore, StopFlag
from training.data import read_channel, split_label
from training.environment import TrainingEnvironment
from training.errors import UserError
from training.gender import evaluate, operating
from training.gender.algorithms import (
    FitContext,
    GenderAlgorithm,
    LogisticRegressionClassifier,
    XGBoostClassifier,
    check_binary,
)
from training.gender.family import FAMILY
from training.hyperparameters import Hyperparameter as HP
from training.hyperparameters import table

log = logging.getLogger("training.gender")

_SHARED = (
    HP("label", str, "", "Label column: a name, or a 0-based index. Default: 'gender' or 'label' "
       "if such a column exists, else column 0."),
    HP("csv_header", str, "auto", "Whether CSV files start with a header row.",
       choices=("auto", "true", "false")),
    HP("input_format", str, "auto", "device_records (raw fields), numeric (featurised rows) or auto.",
       choices=("auto", "device_records", "numeric")),
    HP("positive_class", str, "", "Label value treated as positive (default: the second in sort "
       "order, e.g. 'M' or 1)."),
    HP("threshold", float, 0.5, "Probability cut-off for the predicted label.", min=0.0, max=1.0),
    HP("target_precision", float, None, "Precision each class's audience must keep: train picks, on "
       "the validation split, the lowest threshold per class whose Wilson 95% lower bound of precision "
       "reaches it, and answers gain audience_label (README, The gender model). Unset: no operating "
       "points, answers as before.", min=0.0, max=1.0, nullable=True),
    HP("target_precision_<label>", float, None, "The same for one class, e.g. target_precision_F "
       "(over target_precision); a class with no target is never labelled.", min=0.0, max=1.0,
       nullable=True, prefix=operating.PREFIX),
    HP("validation_fraction", float, 0.2, "Share of train held out when there is no validation "
       "channel (0 = none).", min=0.0, max=0.9),
    HP("seed", int, 0, "Random seed.", min=0, max=2**31 - 1),
    HP("min_count", int, 2, "Least occurrences for a brand/model/app to get its own feature.",
       min=1, max=1_000_000),
    HP("max_apps", int, 20000, "Largest app vocabulary.", min=0, max=1_000_000),
    HP("threads", int, 0, "Training threads (0 = all CPUs).", min=0, max=1024),
)


def common() -> tuple[HP, ...]:
    """Hyperparameters of every gender algorithm; the algorithm choices come from the registry."""
    return (registry.algorithm_hyperparameter(FAMILY.name, FAMILY.default_algorithm,
                                              "Which gender classifier to train."), *_SHARED)


def declared(algorithm: type[GenderAlgorithm]) -> tuple[HP, ...]:
    return common() + tuple(algorithm.hyperparameters)


def doc_tables() -> dict[str, str]:
    """The README's hyperparameter tables of this family (its ``docs`` entry point)."""
    return {"hp-gender-common": table(common()), "hp-xgboost": table(XGBoostClassifier.hyperparameters),
            "hp-logreg": table(LogisticRegressionClassifier.hyperparameters)}


def _pick_label(frame: pd.DataFrame, label: str) -> str | int:
    if label != "":
        return int(label) if label.lstrip("-").isdigit() and label not in frame.columns else label
    for name in ("gender", "label", "target", "y"):
        if name in frame.columns:
            return name
    return 0


def _load_xy(env: TrainingEnvironment, channel: str, params: dict[str, Any], required: bool
             ) -> tuple[pd.DataFrame, pd.Series, str] | None:
    known = frozenset(RAW_FIELDS) | {"gender", "label"}
    data = read_channel(env.channel_dir(channel), channel, env.content_type(channel),
                        params["csv_header"], known, required=required)
    if data is None:
        return None
    if data.frame.shape[1] < 2:
        raise UserError(
            f"Channel '{channel}' reads as a single column ({str(data.frame.columns[0])[:60]!r}): separate "
            "the fields with commas (tabs, ';' or '|' are detected too); there must be a label and features")
    x, y = split_label(data.frame, _pick_label(data.frame, params["label"]), channel)
    return x, y, data.fingerprint


def _pipeline_for(x: pd.DataFrame, params: dict[str, Any]) -> Pipeline:
    fmt = params["input_format"]
    raw = is_raw_frame(x.columns) if fmt == "auto" else fmt == "device_records"
    if raw:
        return DevicePipeline(min_count=params["min_count"], max_apps=params["max_apps"])
    return NumericPipeline()


def run(env: TrainingEnvironment, params: dict[str, Any], algorithm_cls: type[GenderAlgorithm],
        stop: StopFlag) -> dict[str, Any]:
    t0 = time.monotonic()
    threads = params["threads"] or available_cpus()
    log.info("reading channel 'train'", extra={"stage": "read"})
    train = _load_xy(env, "train", params, required=True)
    assert train is not None
    x_train, y_train_raw, train_fp = train
    val = None
    if "validation" in env.channels or env.channel_dir("validation").is_dir():
        val = _load_xy(env, "validation", params, required=False)
    classes, y_train = check_binary(y_train_raw, params["positive_class"] or None)
    goal = operating.targets(params, classes)  # a key naming no class fails here, before any fit

    pipeline = _pipeline_for(x_train, params)
    if val is not None:
        x_val_frame, y_val_raw, val_fp = val
        if [str(c) for c in x_val_frame.columns] != [str(c) for c in x_train.columns] and isinstance(
            pipeline, NumericPipeline
        ):
            raise UserError(
                f"Channel 'validation' has {x_val_frame.shape[1]} feature columns but 'train' has "
                f"{x_train.shape[1]}; both must have the same columns"
            )
        y_val = _encode(y_val_raw, classes, "validation")
        val_source = "validation channel"
    elif params["validation_fraction"] > 0 and len(x_train) >= 10:
        rng = np.random.default_rng(params["seed"])
        order = rng.permutation(len(x_train))
        n_val = max(1, round(len(x_train) * params["validation_fraction"]))
        vi, ti = order[:n_val], order[n_val:]
        x_val_frame, y_val = x_train.iloc[vi].reset_index(drop=True), y_train[vi]
        x_train, y_train = x_train.iloc[ti].reset_index(drop=True), y_train[ti]
        val_fp = None
        val_source = f"{params['validation_fraction']:.0%} of train (seed {params['seed']})"
    else:
        x_val_frame, y_val, val_fp, val_source = None, None, None, "none"
    if goal and y_val is None:
        raise UserError("target_precision needs a validation split to choose the thresholds on (never "
                        "the training rows): give a 'validation' channel, or validation_fraction > 0 "
                        "with at least 10 training rows")

    log.info("fitting the %s feature pipeline on %d rows", pipeline.kind, len(x_train),
             extra={"stage": "features"})
    try:
        pipeline.fit(x_train)
    except DataError as exc:
        raise UserError(str(exc)) from None
    xt = pipeline.transform(x_train)
    xv = pipeline.transform(x_val_frame) if x_val_frame is not None else None
    log.info("features ready: %d columns", pipeline.n_features, extra={"stage": "features"})

    algo = algorithm_cls({k: params[k] for k in (h.name for h in algorithm_cls.hyperparameters)})
    key = _job_key(params, train_fp)
    store = CheckpointStore(env.checkpoint_dir, key) if algorithm_cls.supports_checkpoints else None
    ctx = FitContext(stop=stop, checkpoints=store, emit=metric_lines.emit, threads=threads,
                     seed=params["seed"])
    log.info("training %s", algorithm_cls.name, extra={"stage": "fit"})
    result = algo.fit(xt, y_train, xv, y_val, ctx)
    if stop.is_set and not algorithm_cls.supports_checkpoints:
        raise UserError(f"Training was stopped ({stop.signal_name}) before {algorithm_cls.name} "
                        "finished; it keeps no checkpoints, so run the job again")

    summary: dict[str, Any] = {
        "family": "gender", "algorithm": algorithm_cls.name, "classes": classes,
        "threshold": params["threshold"], "train_rows": len(y_train),
        "validation_rows": len(y_val) if y_val is not None else 0,
        "validation_source": val_source,
    }
    out_dir = env.paths.output_data_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    scorer = algo.scorer()
    if xv is not None and y_val is not None:
        p_val = scorer.predict_proba(xv)
        found = evaluate.binary_metrics(y_val, p_val, params["threshold"])
        summary["metrics"] = found
        summary["confusion"] = evaluate.confusion(y_val, p_val, params["threshold"])
        metric_lines.emit({f"validation:{k}": v for k, v in found.items()}, "final")
        summary["plots"] = evaluate.plot_curves(y_val, p_val, out_dir, algorithm_cls.name)
        if goal:
            points = operating.choose(y_val, p_val, classes, goal)
            operating.log_points(points)
            found.update(operating.metrics(points))
            summary["operating_points"] = points
            summary["plots"].append(operating.plot(points, out_dir, algorithm_cls.name))
        started = time.monotonic()
        importance = evaluate.global_importance(pipeline, scorer, xv, params["seed"])
        if importance is not None:
            summary["global_importance"] = importance
            summary["plots"].append(evaluate.plot_importance(importance, out_dir, algorithm_cls.name))
            log.info("global importance over %d validation rows in %.2f s", importance["rows"],
                     time.monotonic() - started, extra={"stage": "evaluate"})
    train_metrics = evaluate.binary_metrics(y_train, scorer.predict_proba(xt), params["threshold"])
    metric_lines.emit({"train:logloss": train_metrics["logloss"],
                       "train:roc_auc": train_metrics["roc_auc"]}, "final")
    summary["train_metrics"] = train_metrics
    evaluate.write_report(out_dir, summary)

    with ModelWriter(env.paths.model_dir) as writer:
        staging = writer.staging
        files = algo.save(staging)
        files.append(save_pipeline(pipeline, staging).name)
        example = _warmup_example(x_val_frame if x_val_frame is not None else x_train)
        (staging / "warmup.json").write_text(json.dumps(example, default=str, ensure_ascii=False),
                                             encoding="utf-8")
        files.append("warmup.json")
        baseline = None
        if isinstance(pipeline, NumericPipeline):  # Clarify perturbs CSV columns: not device records' lists
            (staging / EXPLAINER_BASELINE).write_text(_explainer_baseline(x_train), encoding="utf-8")
            files.append(EXPLAINER_BASELINE)
            baseline = EXPLAINER_BASELINE
        manifest = {
            "family": "gender",
            "algorithm": algorithm_cls.name,
            "scorer": scorers.reference(algorithm_cls.scorer_class),
            "model_name": "gender",
            "files": files,
            "classes": classes,
            "positive_class": classes[1],
            "threshold": params["threshold"],
            "input": {
                "kind": pipeline.kind,
                "raw_fields": list(RAW_FIELDS) if isinstance(pipeline, DevicePipeline) else None,
                "columns": pipeline.feature_names if isinstance(pipeline, NumericPipeline) else None,
                "n_features": pipeline.n_features,
            },
            "hyperparameters": params,
            "metrics": summary.get("metrics", {}),
            "train_metrics": train_metrics,
            "training": {
                "rows": len(y_train), "steps_done": result.steps_done,
                "steps_planned": result.steps_planned, "stopped_early": result.stopped_early,
                "resumed_from": result.resumed_from, "seconds": round(time.monotonic() - t0, 3),
                "job_name": env.job_name,
            },
            "data_fingerprint": {"train": train_fp, "validation": val_fp},
        }
        if baseline is not None:
            manifest["explainer_baseline"] = baseline
        if "operating_points" in summary:
            manifest[MANIFEST_KEY] = operating.manifest_part(summary["operating_points"])
        writer.commit(manifest)
    log.info("model saved to %s (%s, %d steps%s)", env.paths.model_dir, algorithm_cls.name,
             result.steps_done, ", stopped early" if result.stopped_early else "",
             extra={"stage": "done"})
    return manifest


def _encode(y_raw: pd.Series, classes: list[Any], channel: str) -> np.ndarray:
    names = {str(c) for c in classes}
    bad = sorted({str(v) for v in y_raw} - names)
    if bad:
        raise UserError(f"Channel '{channel}' has label values {bad[:5]} that train does not have "
                        f"(classes: {classes})")
    return np.fromiter((1 if str(v) == str(classes[1]) else 0 for v in y_raw), dtype=np.int32)


def _warmup_example(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Two stored input records that serving predicts before it reports ready."""
    head = frame.head(2)
    records: list[dict[str, Any]] = json.loads(head.to_json(orient="records", force_ascii=False))
    return records


def _explainer_baseline(frame: pd.DataFrame) -> str:
    """SageMaker Clarify's baseline for a numeric-input model: one header-less CSV row, each input
    column's training mean (missing values skipped; 0 for a column with none) in the model's column
    order, at repr precision."""
    means = np.asarray([float(frame.iloc[:, i].mean()) for i in range(frame.shape[1])], dtype=np.float64)
    means = np.where(np.isfinite(means), means, 0.0)
    return ",".join(repr(float(v)) for v in means) + "\n"


def _job_key(params: dict[str, Any], fingerprint: str) -> str:
    blob = json.dumps({"params": params, "data": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

