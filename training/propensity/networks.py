"""Keras builders for MF, GMF, MLP, NeuMF (He et al., WWW 2017) and Wide & Deep.

Layer names are the contract with modelformat.propensity.scoring: ``export`` writes each
layer's weights as ``<layer>/<kernel|bias|embeddings>`` and the NumPy scorer reads them back.
TensorFlow is imported only here, and only in `train`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def _keras() -> Any:
    import keras

    return keras


_LAYERS: dict[str, Any] = {}


def custom_layers() -> dict[str, Any]:
    """Serializable layers for Wide & Deep's crosses (import this module before load_model)."""
    if _LAYERS:
        return _LAYERS
    k = _keras()

    @k.saving.register_keras_serializable(package="mlship")
    class LeadingColumns(k.layers.Layer):  # type: ignore[name-defined]
        def __init__(self, n: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.n = n

        def call(self, x: Any) -> Any:
            return x[:, : self.n]

        def compute_output_shape(self, shape: Any) -> Any:
            return (shape[0], self.n)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "n": self.n}

    @k.saving.register_keras_serializable(package="mlship")
    class OuterProduct(k.layers.Layer):  # type: ignore[name-defined]
        def call(self, inputs: Any) -> Any:
            a, b = inputs
            prod = k.ops.expand_dims(a, 2) * k.ops.expand_dims(b, 1)
            return k.ops.reshape(prod, (-1, a.shape[-1] * b.shape[-1]))

        def compute_output_shape(self, shapes: Any) -> Any:
            return (shapes[0][0], shapes[0][-1] * shapes[1][-1])

    _LAYERS.update(LeadingColumns=LeadingColumns, OuterProduct=OuterProduct)
    return _LAYERS


def _emb(k: Any, n: int, dim: int, name: str, reg: float) -> Any:
    return k.layers.Embedding(
        n, dim, name=name, embeddings_initializer=k.initializers.RandomNormal(stddev=0.01),
        embeddings_regularizer=k.regularizers.l2(reg) if reg else None)


def _flat(k: Any, x: Any) -> Any:
    return k.layers.Flatten()(x)


def _inputs(k: Any) -> tuple[Any, Any]:
    return (k.Input(shape=(1,), dtype="int32", name="user"), k.Input(shape=(1,), dtype="int32", name="item"))


def _out(k: Any) -> Any:
    # Layers draw their initialisers' seeds when constructed: the output layer is made before the
    # MLP tower's layers (as it always was), so a seed trains the same model as before.
    return k.layers.Dense(1, name="out", activation="sigmoid", kernel_initializer="lecun_uniform")


def _gmf_tower(k: Any, arch: Mapping[str, Any], u: Any, i: Any, n_users: int, n_items: int) -> Any:
    f, reg = int(arch["factors"]), float(arch.get("reg", 0.0))
    return k.layers.Multiply()([_flat(k, _emb(k, n_users, f, "gmf_user", reg)(u)),
                                _flat(k, _emb(k, n_items, f, "gmf_item", reg)(i))])


def _mlp_tower(k: Any, arch: Mapping[str, Any], u: Any, i: Any, n_users: int, n_items: int) -> Any:
    reg = float(arch.get("reg", 0.0))
    half = int(arch["mlp_layers"][0]) // 2
    h = k.layers.Concatenate()([_flat(k, _emb(k, n_users, half, "mlp_user", reg)(u)),
                                _flat(k, _emb(k, n_items, half, "mlp_item", reg)(i))])
    for n, width in enumerate(arch["mlp_layers"][1:]):
        h = k.layers.Dense(int(width), activation="relu", name=f"mlp_{n}",
                           kernel_regularizer=k.regularizers.l2(reg) if reg else None)(h)
    return h


# Each builder: (architecture, users, items, side tables) -> the Keras model (inputs: user index,
# item index; output: probability). The propensity algorithm classes pick theirs.
def mf(arch: Mapping[str, Any], n_users: int, n_items: int,
       side: Mapping[str, np.ndarray] | None = None) -> Any:
    """Dot product with user and item biases, scaled by one weight into a sigmoid."""
    k = _keras()
    f, reg = int(arch["factors"]), float(arch.get("reg", 0.0))
    u, i = _inputs(k)
    pu = _flat(k, _emb(k, n_users, f, "mf_user", reg)(u))
    qi = _flat(k, _emb(k, n_items, f, "mf_item", reg)(i))
    bu = _flat(k, k.layers.Embedding(n_users, 1, name="user_bias", embeddings_initializer="zeros")(u))
    bi = _flat(k, k.layers.Embedding(n_items, 1, name="item_bias", embeddings_initializer="zeros")(i))
    s = k.layers.Add()([k.layers.Dot(axes=1)([pu, qi]), bu, bi])
    out = k.layers.Dense(1, name="out", activation="sigmoid", kernel_initializer="ones")(s)
    return k.Model([u, i], out, name="mf")


def gmf(arch: Mapping[str, Any], n_users: int, n_items: int,
        side: Mapping[str, np.ndarray] | None = None) -> Any:
    k = _keras()
    u, i = _inputs(k)
    g = _gmf_tower(k, arch, u, i, n_users, n_items)
    return k.Model([u, i], _out(k)(g), name="gmf")


def mlp(arch: Mapping[str, Any], n_users: int, n_items: int,
        side: Mapping[str, np.ndarray] | None = None) -> Any:
    k = _keras()
    u, i = _inputs(k)
    out = _out(k)
    return k.Model([u, i], out(_mlp_tower(k, arch, u, i, n_users, n_items)), name="mlp")


def neumf(arch: Mapping[str, Any], n_users: int, n_items: int,
          side: Mapping[str, np.ndarray] | None = None) -> Any:
    k = _keras()
    u, i = _inputs(k)
    g = _gmf_tower(k, arch, u, i, n_users, n_items)
    out = _out(k)
    return k.Model([u, i], out(k.layers.Concatenate()([g, _mlp_tower(k, arch, u, i, n_users, n_items)])),
                   name="neumf")


def wide_deep(arch: Mapping[str, Any], n_users: int, n_items: int,
              side: Mapping[str, np.ndarray] | None = None) -> Any:
    """Wide: side features and their categorical crosses; deep: id embeddings and side features."""
    if side is None:
        raise ValueError("Wide & Deep needs its side feature tables")
    k = _keras()
    f, reg = int(arch["factors"]), float(arch.get("reg", 0.0))
    u, i = _inputs(k)
    uf_table, if_table = side["user_features"], side["item_features"]
    ufe = k.layers.Embedding(uf_table.shape[0], uf_table.shape[1], name="user_features",
                             trainable=False, embeddings_initializer=k.initializers.Constant(uf_table))
    ife = k.layers.Embedding(if_table.shape[0], if_table.shape[1], name="item_features",
                             trainable=False, embeddings_initializer=k.initializers.Constant(if_table))
    uf, itf = _flat(k, ufe(u)), _flat(k, ife(i))
    layers = custom_layers()
    ucat = layers["LeadingColumns"](int(arch["user_categorical"]))(uf)
    icat = layers["LeadingColumns"](int(arch["item_categorical"]))(itf)
    cross = layers["OuterProduct"]()([ucat, icat])
    wide = k.layers.Dense(1, name="wide")(k.layers.Concatenate()([uf, itf, cross]))
    deep = k.layers.Concatenate()([_flat(k, _emb(k, n_users, f, "deep_user", reg)(u)),
                                   _flat(k, _emb(k, n_items, f, "deep_item", reg)(i)), uf, itf])
    for n, width in enumerate(arch["mlp_layers"]):
        deep = k.layers.Dense(int(width), activation="relu", name=f"deep_{n}")(deep)
    deep = k.layers.Dense(1, name="deep_out")(deep)
    out = k.layers.Activation("sigmoid")(k.layers.Add()([wide, deep]))
    return k.Model([u, i], out, name="wide_deep")


def export(model: Any) -> dict[str, np.ndarray]:
    """Layer weights by '<layer>/<variable>' for the NumPy scorer."""
    out: dict[str, np.ndarray] = {}
    for layer in model.layers:
        for var in layer.weights:
            short = var.path.split("/")[-1]
            out[f"{layer.name}/{short}"] = np.asarray(var.numpy())
    return out


def load_from_pretrained(neumf: Any, gmf: Any, mlp: Any, alpha: float) -> None:
    """NeuMF initialised from trained GMF and MLP, the output layer mixing them by alpha."""
    for name in ("gmf_user", "gmf_item"):
        neumf.get_layer(name).set_weights(gmf.get_layer(name).get_weights())
    for layer in mlp.layers:
        if layer.name.startswith("mlp_"):
            neumf.get_layer(layer.name).set_weights(layer.get_weights())
    gk, gb = gmf.get_layer("out").get_weights()
    mk, mb = mlp.get_layer("out").get_weights()
    neumf.get_layer("out").set_weights([np.concatenate([alpha * gk, (1 - alpha) * mk]),
                                        alpha * gb + (1 - alpha) * mb])
