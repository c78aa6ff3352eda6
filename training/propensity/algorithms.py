"""The propensity algorithms: each declares its hyperparameters, builds its network, trains it and
names the scorer (modelformat.propensity.scoring) that serves what it exports.

``task.run`` prepares a ``Job`` (vocabularies, training pairs, validation, checkpoints) and
calls ``train`` without knowing which algorithm it holds; registering a new class in
training.registry is all a new algorithm needs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from container.resources import available_cpus
from modelformat.propensity.scoring import (
    GMFScorer,
    MFScorer,
    MLPScorer,
    NeuMFScorer,
    PairScorer,
    PopularityScorer,
    Weights,
    WideDeepScorer,
)
from modelformat.propensity.vocab import Vocab
from training import metrics as metric_lines
from training.checkpoints import CheckpointStore, StopFlag
from training.errors import UserError
from training.hyperparameters import Hyperparameter as HP
from training.propensity import networks, side
from training.propensity.data import Interactions, SeenItems
from training.propensity.trainer import LoopConfig, LoopResult, fit

log = logging.getLogger("training.propensity")

NEURAL: tuple[HP, ...] = (
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
PRETRAIN: tuple[HP, ...] = (
    HP("pretrain", bool, False, "Pre-train GMF and MLP, then initialise NeuMF from them (NCF paper)."),
    HP("pretrain_epochs", int, 0, "Epochs of each pre-training phase (0 = epochs).", min=0, max=1000),
    HP("alpha", float, 0.5, "Weight of GMF vs MLP in the pre-trained output layer.", min=0.0, max=1.0),
    HP("finetune_optimizer", str, "sgd", "Optimiser for NeuMF after pre-training (the paper uses SGD).",
       choices=("adam", "sgd", "adagrad")),
    HP("finetune_learning_rate", float, 0.001, "Learning rate after pre-training.", min=1e-6, max=10.0),
)
WIDE_DEEP: tuple[HP, ...] = (
    HP("user_features_id", str, "", "Id column of the 'users' channel (default: its first column)."),
)


@dataclass
class Job:
    """What an algorithm trains on, prepared by task.run."""

    params: dict[str, Any]
    users: Vocab
    items: Vocab
    train: Interactions
    seen: SeenItems
    stop: StopFlag
    # a network's validation scorer: architecture -> (weights -> metrics)
    evaluate_as: Callable[[dict[str, Any]], Callable[[Weights], dict[str, float]]]
    store: Callable[[str], CheckpointStore]  # the checkpoints of a phase ('main', 'gmf', 'mlp')
    read: Callable[[str], pd.DataFrame | None]  # an optional channel, None when absent
    items_table: pd.DataFrame | None = None


@dataclass
class Trained:
    arch: dict[str, Any]
    weights: dict[str, np.ndarray]
    best: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)
    keras_model: Any = None


class PropensityAlgorithm:
    family: ClassVar[str] = "propensity"
    name: ClassVar[str]
    hyperparameters: ClassVar[tuple[HP, ...]] = ()
    scorer_class: ClassVar[type[PairScorer]]

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def train(self, job: Job) -> Trained:
        raise NotImplementedError


class Popularity(PropensityAlgorithm):
    """Items ranked by their number of interactions (ItemPop)."""

    name = "popularity"
    scorer_class = PopularityScorer

    def train(self, job: Job) -> Trained:
        arch = {"kind": self.scorer_class.kind}
        info = {"epochs_done": 0, "best_epoch": 0, "history": []}
        return Trained(arch, {}, job.evaluate_as(arch)({}), info)


def mlp_layers(params: dict[str, Any]) -> list[int]:
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


def setup_tensorflow(params: dict[str, Any]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    threads = params["threads"] or available_cpus()
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


class NeuralAlgorithm(PropensityAlgorithm):
    """A Keras network trained on sampled negatives (trainer.fit), exported for its NumPy scorer."""

    hyperparameters = NEURAL
    network: Callable[..., Any]  # a builder of training.propensity.networks

    def architecture(self, job: Job) -> dict[str, Any]:
        p = self.params
        return {"kind": self.scorer_class.kind, "factors": p["factors"], "mlp_layers": mlp_layers(p),
                "reg": p["reg"]}

    def side_tables(self, job: Job, arch: dict[str, Any]) -> dict[str, np.ndarray] | None:
        return None

    def pretrain(self, job: Job, arch: dict[str, Any], info: dict[str, Any]) -> Callable[[Any], None] | None:
        """Phases before the main one; what they return initialises the main network."""
        return None

    def loop(self, job: Job, phase: str, epochs: int, optimizer: str, learning_rate: float,
             score_start: bool = False) -> LoopConfig:
        p = self.params
        return LoopConfig(epochs=epochs, learning_rate=learning_rate, optimizer=optimizer, phase=phase,
                          score_start=score_start, batch_size=p["batch_size"], negatives=p["negatives"],
                          patience=p["patience"], monitor=f"{p.get('monitor', 'ndcg')}@{p['top_k']}",
                          seed=p["seed"], lr_decay=p["lr_decay"], ema=p["ema"])

    def fit_phase(self, job: Job, model: Any, arch: dict[str, Any], cfg: LoopConfig) -> LoopResult:
        return fit(model, arch, job.train, job.seen, len(job.items), cfg, job.stop, job.store(cfg.phase),
                   job.evaluate_as(arch), metric_lines.emit)

    def train(self, job: Job) -> Trained:
        setup_tensorflow(self.params)
        p = self.params
        arch = self.architecture(job)
        tables = self.side_tables(job, arch)
        info: dict[str, Any] = {}
        start = self.pretrain(job, arch, info)
        model = type(self).network(arch, len(job.users), len(job.items), tables)
        optimizer, lr, warm = p["optimizer"], p["learning_rate"], False
        if start is not None and not job.stop.is_set:
            start(model)
            optimizer, lr, warm = p["finetune_optimizer"], p["finetune_learning_rate"], True
        res = self.fit_phase(job, model, arch, self.loop(job, "main", p["epochs"], optimizer, lr, warm))
        info.update({"epochs_done": res.epochs_done, "best_epoch": res.best_epoch, "history": res.history,
                     "stopped_early": res.stopped_early, "resumed_from": res.resumed_from})
        return Trained(arch, networks.export(model), res.best, info, model)


# The classes below are rows of the algorithm table (name, scorer, network builder): they share a
# shape on purpose (`duplicates` lists two of them).
class MatrixFactorisation(NeuralAlgorithm):
    """Dot-product MF with biases, logistic loss and sampled negatives (the strong baseline)."""

    name = "mf"
    scorer_class = MFScorer
    network = staticmethod(networks.mf)


class GMF(NeuralAlgorithm):
    name = "gmf"
    scorer_class = GMFScorer
    network = staticmethod(networks.gmf)


class MLP(NeuralAlgorithm):
    name = "mlp"
    scorer_class = MLPScorer
    network = staticmethod(networks.mlp)


class NeuMF(NeuralAlgorithm):
    name = "neumf"
    hyperparameters = NEURAL + PRETRAIN
    scorer_class = NeuMFScorer
    network = staticmethod(networks.neumf)
    PHASES: ClassVar[tuple[type[NeuralAlgorithm], ...]] = (GMF, MLP)

    def pretrain(self, job: Job, arch: dict[str, Any], info: dict[str, Any]) -> Callable[[Any], None] | None:
        p = self.params
        if not p["pretrain"]:
            return None
        pretrained: dict[str, Any] = {}
        for phase_cls in self.PHASES:
            phase = phase_cls.scorer_class.kind
            sub = {**arch, "kind": phase}
            model = phase_cls.network(sub, len(job.users), len(job.items))
            res = self.fit_phase(job, model, sub, self.loop(job, phase, p["pretrain_epochs"] or p["epochs"],
                                                            p["optimizer"], p["learning_rate"]))
            pretrained[phase] = model
            info[f"pretrain_{phase}"] = {"best_epoch": res.best_epoch, "best": res.best,
                                         "resumed_from": res.resumed_from, "history": res.history}
            if job.stop.is_set:
                break

        def start(model: Any) -> None:
            networks.load_from_pretrained(model, pretrained["gmf"], pretrained["mlp"], p["alpha"])
            log.info("NeuMF initialised from pre-trained GMF and MLP (alpha %.2f); fine-tuning with %s",
                     p["alpha"], p["finetune_optimizer"])

        return start


class WideDeep(NeuralAlgorithm):
    name = "wide_deep"
    hyperparameters = NEURAL + WIDE_DEEP
    scorer_class = WideDeepScorer
    network = staticmethod(networks.wide_deep)

    def architecture(self, job: Job) -> dict[str, Any]:
        arch = super().architecture(job)
        arch["mlp_layers"] = arch["mlp_layers"][1:] or [self.params["factors"]]
        return arch

    def side_tables(self, job: Job, arch: dict[str, Any]) -> dict[str, np.ndarray] | None:
        p = self.params
        uenc = side.encode(job.read("users"), p["user_features_id"], job.users, "users")
        ienc = side.encode(job.items_table, p["item_features_id"], job.items, "items")
        arch.update({"user_categorical": uenc.n_categorical, "item_categorical": ienc.n_categorical,
                     "user_feature_names": uenc.names, "item_feature_names": ienc.names})
        log.info("wide & deep side features: users %s, items %s", side.summary(uenc), side.summary(ienc))
        return {"user_features": uenc.matrix, "item_features": ienc.matrix}
