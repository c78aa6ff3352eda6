"""The epoch loop shared by every Keras propensity network.

Each epoch resamples ``negatives`` items per positive, fits one pass, scores the validation
cases with the NumPy scorer (what `serve` runs), prints a metric line, checkpoints weights and
optimizer state, and applies early stopping on the validation metric. SIGTERM stops after the
current batch; the checkpoint of the last completed epoch lets a restarted job resume.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.checkpoints import CheckpointStore, StopFlag
from training.propensity import networks
from training.propensity.data import Interactions, SeenItems, sample_negatives

log = logging.getLogger("training.propensity")


@dataclass
class LoopConfig:
    epochs: int
    batch_size: int
    negatives: int
    learning_rate: float
    optimizer: str
    patience: int
    monitor: str
    seed: int
    phase: str = "main"
    lr_decay: float = 1.0
    ema: float = 0.0
    # Score the starting weights as epoch 0, a candidate for the best (NeuMF after pre-training,
    # as the NCF authors' code does): fine-tuning that only hurts then leaves them as they were.
    score_start: bool = False


@dataclass
class LoopResult:
    epochs_done: int
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from: int | None = None


@dataclass
class _Best:
    """The best epoch so far by the monitored metric, with a copy of its weights."""

    epoch: int = 0
    value: float = -np.inf
    metrics: dict[str, float] = field(default_factory=dict)
    weights: list[np.ndarray] | None = None

    def offer(self, epoch: int, found: dict[str, float], monitor: str, model: Any) -> None:
        value = found.get(monitor, -np.inf)
        if value > self.value:
            self.epoch, self.value, self.metrics = epoch, value, found
            self.weights = [w.copy() for w in model.get_weights()]


def _step(phase: str, epoch: int) -> int | str:
    """The metric line's step: the epoch, prefixed by the phase for pre-training phases."""
    return epoch if phase == "main" else f"{phase}-{epoch}"


def make_optimizer(name: str, lr: float, ema: float = 0.0) -> Any:
    """Keras optimiser; ``ema`` > 0 keeps a moving average of the weights (per-step momentum).

    Keras' fit() ends by writing the average into the model, so each epoch is evaluated,
    checkpointed and continued from the averaged weights; the averages are optimizer
    variables, so a resumed job keeps them.
    """
    import keras

    kind = {"sgd": keras.optimizers.SGD, "adagrad": keras.optimizers.Adagrad}.get(name, keras.optimizers.Adam)
    averaging = {"use_ema": True, "ema_momentum": ema} if ema else {}
    return kind(learning_rate=lr, **averaging)


def _pack(model: Any, best: list[np.ndarray] | None) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    for n, w in enumerate(model.get_weights()):
        arrays[f"w{n}"] = w
    for n, v in enumerate(model.optimizer.variables):
        arrays[f"o{n}"] = np.asarray(v.numpy())
    for n, w in enumerate(best or []):
        arrays[f"b{n}"] = w
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _unpack(model: Any, payload: bytes) -> list[np.ndarray] | None:
    data = np.load(io.BytesIO(payload))
    weights = [data[f"w{n}"] for n in range(sum(1 for k in data.files if k.startswith("w")))]
    model.set_weights(weights)
    model.optimizer.build(model.trainable_variables)
    for n, var in enumerate(model.optimizer.variables):
        key = f"o{n}"
        if key in data.files:
            var.assign(data[key])
    best = [data[f"b{n}"] for n in range(sum(1 for k in data.files if k.startswith("b")))]
    return best or None


class _Progress:
    """Batch callback: progress lines every few seconds, and stop on SIGTERM."""

    def __init__(self, stop: StopFlag, epoch: int, epochs: int, samples: int, batch: int, phase: str
                 ) -> None:
        import keras

        outer = self

        class CB(keras.callbacks.Callback):
            def on_train_batch_end(self, step: int, logs: Any = None) -> None:
                outer.on_batch(self.model, step, logs or {})

        self.callback = CB()
        self.stop, self.epoch, self.epochs, self.phase = stop, epoch, epochs, phase
        self.samples, self.batch = samples, batch
        self.started = time.monotonic()
        self.last = self.started

    def on_batch(self, model: Any, step: int, logs: dict[str, Any]) -> None:
        if self.stop.is_set:
            model.stop_training = True
        now = time.monotonic()
        if now - self.last >= 10:
            self.last = now
            done = min(self.samples, (step + 1) * self.batch)
            rate = done / max(now - self.started, 1e-9)
            eta = (self.samples - done) / max(rate, 1e-9)
            log.info("%s epoch %d/%d: %.0f%% (%d samples/s, ETA %.0fs, loss %.4f)", self.phase,
                     self.epoch, self.epochs, 100 * done / self.samples, rate, eta,
                     float(logs.get("loss", float("nan"))))


def fit(model: Any, arch: dict[str, Any], train: Interactions, seen: SeenItems, n_items: int,
        cfg: LoopConfig, stop: StopFlag, store: CheckpointStore | None,
        evaluate: Callable[[dict[str, np.ndarray]], dict[str, float]],
        emit: Callable[[dict[str, float], int | str | None], Any]) -> LoopResult:
    """Train ``model`` in place; on return it holds the best weights seen."""
    model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate, cfg.ema),
                  loss="binary_crossentropy")
    start_epoch, best = 1, _Best()
    history: list[dict[str, float]] = []
    resumed = None
    if store is not None and (ckpt := store.latest()) is not None and ckpt.meta.get("phase") == cfg.phase:
        best.weights = _unpack(model, ckpt.path.read_bytes())
        start_epoch = int(ckpt.meta["epoch"]) + 1
        best.epoch, best.value = int(ckpt.meta["best_epoch"]), float(ckpt.meta["best_value"])
        best.metrics, history = dict(ckpt.meta["best_metrics"]), list(ckpt.meta["history"])
        resumed = int(ckpt.meta["epoch"])
        log.info("resuming %s from checkpoint %s after epoch %d", cfg.phase, ckpt.path.name, resumed)
        if ckpt.meta.get("finished"):
            log.info("%s already finished in the checkpointed run; reusing its best weights", cfg.phase)
            start_epoch = cfg.epochs + 1

    if cfg.score_start and resumed is None:
        found = evaluate(networks.export(model))
        if found:
            scored = {f"validation:{k}": v for k, v in found.items()}
            history.append({"epoch": 0.0, **scored})
            emit(scored, _step(cfg.phase, 0))
            best.offer(0, found, cfg.monitor, model)

    n_pos = len(train)
    epoch = start_epoch - 1
    stopped = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        if stop.is_set:
            stopped = True
            epoch -= 1
            break
        # From the epoch number, not from the optimizer's state: a resumed job decays the same.
        lr = cfg.learning_rate * cfg.lr_decay ** (epoch - 1)
        model.optimizer.learning_rate.assign(lr)
        rng = np.random.default_rng([cfg.seed, epoch])
        neg = sample_negatives(train.users, cfg.negatives, seen, rng, n_items)
        users = np.concatenate([train.users, np.repeat(train.users, cfg.negatives)]).astype(np.int32)
        items = np.concatenate([train.items, neg.reshape(-1)]).astype(np.int32)
        labels = np.concatenate([np.ones(n_pos, np.float32), np.zeros(neg.size, np.float32)])
        order = rng.permutation(users.size)
        progress = _Progress(stop, epoch, cfg.epochs, users.size, cfg.batch_size, cfg.phase)
        t0 = time.monotonic()
        hist = model.fit([users[order], items[order]], labels[order], batch_size=cfg.batch_size,
                         epochs=1, shuffle=False, verbose=0, callbacks=[progress.callback])
        seconds = time.monotonic() - t0
        if stop.is_set:
            # The epoch was cut short: its weights are not a completed epoch, keep the last one.
            stopped = True
            epoch -= 1
            break
        found = evaluate(networks.export(model))
        loss = float(hist.history["loss"][-1])
        scored = {f"validation:{k}": v for k, v in found.items()}
        history.append({"epoch": float(epoch), "train:loss": loss, "learning_rate": lr, "seconds": seconds,
                        "samples_per_s": users.size / max(seconds, 1e-9), **scored})
        emit({"train:loss": loss, **scored, "epoch_seconds": seconds}, _step(cfg.phase, epoch))
        best.offer(epoch, found, cfg.monitor, model)
        early = bool(cfg.patience and epoch - best.epoch >= cfg.patience)
        if store is not None:
            store.save(epoch, _pack(model, best.weights), "npz", {
                "phase": cfg.phase, "epoch": epoch, "best_epoch": best.epoch,
                "best_value": float(best.value), "best_metrics": best.metrics, "history": history,
                "finished": early or epoch == cfg.epochs})
        if early:
            log.info("%s: early stopping after epoch %d (best %s %.4f at epoch %d)", cfg.phase, epoch,
                     cfg.monitor, best.value, best.epoch)
            break
    if best.weights is not None:
        model.set_weights(best.weights)
    return LoopResult(max(epoch, resumed or 0), best.epoch, best.metrics, history, stopped, resumed)

