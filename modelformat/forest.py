"""A tree ensemble as NumPy arrays, for the small batches where calling XGBoost costs more than
walking its trees.

XGBoost's ``inplace_predict`` spends ~0.25 ms per call on one row before it visits a node (its
configuration, array interface and output copying), while 200 trees of depth 6 are ~1,200
comparisons. Here every tree is padded to a complete binary tree of the ensemble's depth
(a leaf above the last level becomes a split whose both sides hold its value), so one level of
every tree is a handful of vectorised gathers, and a row is scored in a few tens of
microseconds. The arithmetic is XGBoost's: float32 feature values and thresholds, ``x < split``
goes left, a missing value follows the node's default side, leaf values summed tree by tree in
float32 from the base margin, then the objective's link.

For a few rows the walk itself is in C (``modelformat._forest``, built with the package; the
same layout and arithmetic, with no array call per level); where that extension was not built,
NumPy walks the trees, with the same results.

Only what this reproduces exactly is compiled: numerical splits, one target, no multi-class, a
depth where padding stays small. Anything else returns None from ``compile_booster`` and the
caller keeps XGBoost for every batch.
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import Buffer

compiled: ModuleType | None
try:
    from modelformat import _forest as compiled
except ImportError:  # built without a C compiler: the NumPy walk below
    compiled = None

# Batches up to this many rows are walked here, larger ones left to XGBoost (measured on one
# 200-tree depth-6 model: the C walk takes 7 us for one row, 1.1 ms for 128 rows where XGBoost
# takes 2.4 ms, and they are even at 256; the NumPy walk is 1.5x faster than XGBoost at 32 rows).
SMALL_BATCH = 32 if compiled is None else 128
NODE = np.dtype([("feature", "<u4"), ("threshold", "<f4")])  # _forest.c's Node
MAX_DEPTH = 10  # 1,023 padded nodes per tree; deeper trees stay with XGBoost
LINKS = {"binary:logistic": "sigmoid", "reg:logistic": "sigmoid", "reg:squarederror": "identity",
         "reg:linear": "identity", "binary:logitraw": "identity"}


@dataclass(frozen=True)
class Forest:
    """Trees of ``depth`` levels, laid out level by level: level l holds node k of tree t (k-th of
    its 2**l nodes there) at ``level_start(l) + t * 2**l + k``, so a node's children on the next
    level are at positions 2i and 2i + 1 of that level, for every tree alike."""

    feature: np.ndarray  # (trees * inner,) int64: feature index per padded inner node
    threshold: np.ndarray  # (trees * inner,) float32
    default_right: np.ndarray  # (trees * inner,) bool: where a missing value goes
    leaf: np.ndarray  # (trees * 2**depth,) float32: tree t's leaves at t * 2**depth ...
    depth: int
    base_margin: np.float32
    link: str
    n_features: int
    n_trees: int
    nodes: np.ndarray  # the C walk's copy: NODE records tree by tree, each tree in heap order

    @classmethod
    def build(cls, feature: np.ndarray, threshold: np.ndarray, default_right: np.ndarray, leaf: np.ndarray,
              depth: int, base_margin: np.float32, link: str, n_features: int, n_trees: int) -> Forest:
        inner = (1 << depth) - 1
        nodes = np.empty((n_trees, inner), dtype=NODE)
        for level in range(depth):  # level-major (trees, 2**level) blocks -> heap positions per tree
            at = slice(n_trees * ((1 << level) - 1), n_trees * ((2 << level) - 1))
            heap = slice((1 << level) - 1, (2 << level) - 1)
            nodes["feature"][:, heap] = (feature[at].astype(np.uint32)
                                         | (default_right[at].astype(np.uint32) << np.uint32(31))
                                         ).reshape(n_trees, 1 << level)
            nodes["threshold"][:, heap] = threshold[at].reshape(n_trees, 1 << level)
        return cls(feature=feature, threshold=threshold, default_right=default_right, leaf=leaf, depth=depth,
                   base_margin=base_margin, link=link, n_features=n_features, n_trees=n_trees,
                   nodes=nodes.ravel())

    def level(self, level: int) -> slice:
        start = self.n_trees * ((1 << level) - 1)
        return slice(start, start + (self.n_trees << level))

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Raw scores of a float32 matrix (rows, features), as XGBoost sums them."""
        if compiled is not None:
            return self.margin_c(x)
        return self.margin_numpy(x)

    def margin_c(self, x: np.ndarray, link: bool = False) -> np.ndarray:
        """The C walk; ``link``: with the objective's link applied there too, as XGBoost computes it."""
        out = np.empty(x.shape[0], dtype=np.float32)
        assert compiled is not None, "modelformat._forest was not built"
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not x.flags.aligned:  # a view into bytes at an odd offset: the C walk refuses it
            x = x.copy()
        compiled.margin(x, self.nodes, self.leaf, self.depth, self.n_trees, self.n_features,
                        float(self.base_margin), link and self.link == "sigmoid", out)
        return out

    def margin_numpy(self, x: np.ndarray) -> np.ndarray:
        missing = bool(np.isnan(x).any())
        node = np.arange(self.n_trees, dtype=np.int64)  # each tree's root: level 0, position t
        if x.shape[0] == 1:
            # One row: every split of every tree decided at once (three large operations), then
            # the trees walked down through those decisions, one gather per level, in place.
            values = x[0].take(self.feature)
            right = values >= self.threshold
            if missing:
                right = np.where(np.isnan(values), self.default_right, right)
            for level in range(self.depth):
                went = right[self.level(level)].take(node)
                node <<= 1
                node += went
            node = node[None, :]
        else:
            # Several rows: level by level, deciding only the nodes the rows are at.
            flat = x.ravel()
            row_start = (np.arange(x.shape[0], dtype=np.int64) * x.shape[1])[:, None]
            node = np.broadcast_to(node, (x.shape[0], self.n_trees))
            for level in range(self.depth):
                at = self.level(level)
                values = flat.take(self.feature[at].take(node) + row_start)
                right = values >= self.threshold[at].take(node)
                if missing:
                    right = np.where(np.isnan(values), self.default_right[at].take(node), right)
                node = 2 * node + right
        terms = self.leaf.take(node)  # a new array: adding into it is safe
        terms[:, 0] += self.base_margin
        # Sequential float32 accumulation from the base margin, in XGBoost's order: cumsum
        # adds one term at a time, where sum() would pair them up and round differently.
        return np.cumsum(terms, axis=1, dtype=np.float32)[:, -1]

    def score_csv(self, body: bytes, max_rows: int = SMALL_BATCH) -> list[float] | None:
        """Predictions for a body of plain numeric CSV rows, parsed and walked in one C call, or
        None where that call does not apply (no C walk, anything but up to ``max_rows`` rows of
        ``n_features`` plain decimals): the caller then decodes the body and predicts as usual.
        The values are NumPy's float32 cast of each field, so the same as ``predict`` of the
        decoded rows."""
        if compiled is None:
            return None
        return compiled.score_csv(body, self.nodes, self.leaf, self.depth, self.n_trees, self.n_features,
                                  float(self.base_margin), self.link == "sigmoid", max_rows)

    def csv_matrix(self, body: bytes, max_rows: int) -> np.ndarray | None:
        """The rows of a body of plain numeric CSV rows as a float32 matrix, read by the same C
        parse as ``score_csv`` (so the same values), or None where that parse does not apply."""
        if compiled is None:
            return None
        raw = compiled.csv_rows(body, self.n_features, max_rows)
        return None if raw is None else np.frombuffer(raw, dtype=np.float32).reshape(-1, self.n_features)

    def score_rows(self, rows: Buffer, n_rows: int) -> list[float] | None:
        """``predict`` of ``n_rows`` float32 rows laid end to end in a buffer (an ``array('f')``),
        without NumPy; None without the C walk."""
        if compiled is None:
            return None
        out = array("f", bytes(4 * n_rows))
        compiled.margin(rows, self.nodes, self.leaf, self.depth, self.n_trees, self.n_features,
                        float(self.base_margin), self.link == "sigmoid", out)
        return out.tolist()

    def predict(self, x: np.ndarray) -> np.ndarray:
        if compiled is not None:
            return self.margin_c(np.asarray(x, dtype=np.float32), link=True)
        m = self.margin(np.asarray(x, dtype=np.float32))
        if self.link == "sigmoid":
            return np.float32(1.0) / (np.float32(1.0) + np.exp(-m))
        return m


def _base_margin(raw: str, link: str) -> np.float32:
    value = np.float32(float(raw.strip("[]").split(",")[0]))
    if link == "sigmoid":  # XGBoost keeps the base score as a probability for logistic objectives
        return np.float32(-np.log(np.float32(1.0) / value - np.float32(1.0)))
    return value


def _pad(tree: dict[str, Any], depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One tree as a complete binary tree of ``depth`` levels (heap order: children of i are
    2i+1 and 2i+2)."""
    inner = (1 << depth) - 1
    feature = np.zeros(inner, dtype=np.int64)
    threshold = np.full(inner, np.inf, dtype=np.float32)  # x >= inf is False: a padded split goes left
    default_right = np.zeros(inner, dtype=bool)
    leaf = np.zeros(1 << depth, dtype=np.float32)
    lefts, rights = tree["left_children"], tree["right_children"]
    splits, conds, defaults = tree["split_indices"], tree["split_conditions"], tree["default_left"]
    stack = [(0, 0, 0)]  # (xgboost node, heap position, level)
    while stack:
        node, pos, level = stack.pop()
        if lefts[node] == -1:  # a leaf: every padded descendant on the left holds its value
            first = pos
            for _ in range(level, depth):
                first = 2 * first + 1
            span = 1 << (depth - level)
            leaf[first - inner:first - inner + span] = conds[node]
            continue
        feature[pos] = splits[node]
        threshold[pos] = conds[node]
        default_right[pos] = not defaults[node]
        stack.append((lefts[node], 2 * pos + 1, level + 1))
        stack.append((rights[node], 2 * pos + 2, level + 1))
    return feature, threshold, default_right, leaf


def _depth(tree: dict[str, Any]) -> int:
    lefts, rights = tree["left_children"], tree["right_children"]
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, level = stack.pop()
        if lefts[node] == -1:
            deepest = max(deepest, level)
        else:
            stack += [(lefts[node], level + 1), (rights[node], level + 1)]
    return deepest


def compile_model(model: dict[str, Any]) -> Forest | None:
    """The Forest of an XGBoost JSON model, or None when it is not one this module reproduces."""
    learner = model["learner"]
    link = LINKS.get(learner["objective"]["name"])
    params = learner["learner_model_param"]
    booster = learner["gradient_booster"]
    if link is None or booster.get("name") != "gbtree" or int(params.get("num_class", 0)) > 1 \
            or int(params.get("num_target", 1)) != 1:
        return None
    trees = booster["model"]["trees"]
    if not trees or any(any(t.get("split_type", [])) or int(t["tree_param"]["size_leaf_vector"]) > 1
                        for t in trees):
        return None
    depth = max(max(_depth(t) for t in trees), 1)
    if depth > MAX_DEPTH:
        return None
    padded = [_pad(t, depth) for t in trees]
    n_features = int(params["num_feature"])
    if n_features >= 1 << 31 or any(p[0].max(initial=0) >= n_features for p in padded):  # C reads x[feature]
        return None

    def by_level(part: int) -> np.ndarray:  # heap order per tree -> level by level over all trees
        heap = np.stack([p[part] for p in padded])  # (trees, inner)
        return np.concatenate([heap[:, (1 << lv) - 1:(2 << lv) - 1].ravel() for lv in range(depth)])

    return Forest.build(feature=by_level(0), threshold=by_level(1), default_right=by_level(2),
                        leaf=np.concatenate([p[3] for p in padded]),
                        depth=depth, base_margin=_base_margin(params["base_score"], link), link=link,
                        n_features=n_features, n_trees=len(trees))


def probe_rows(forest: Forest, rows: int = 256, seed: int = 0) -> np.ndarray:
    """Rows that take both sides of the forest's splits: each value is a threshold of its feature,
    nudged one float32 step either way, or missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, forest.n_features)).astype(np.float32)
    real = np.isfinite(forest.threshold)  # padded splits have an infinite threshold
    for f in np.unique(forest.feature[real]):
        cuts = forest.threshold[real & (forest.feature == f)]
        picked = rng.choice(cuts, size=rows)
        x[:, f] = np.where(rng.random(rows) < 0.5, np.nextafter(picked, np.float32(-np.inf)), picked)
    x[rng.random(x.shape) < 0.05] = np.nan
    return x


def compile_booster(booster: Any, tolerance: float = 1e-6) -> Forest | None:
    """The Forest of a loaded ``xgboost.Booster``, checked against the booster itself on rows at
    its split points: a model this module would score differently keeps XGBoost (None)."""
    forest = compile_model(json.loads(booster.save_raw("json")))
    if forest is None:
        return None
    x = probe_rows(forest)
    expected = np.asarray(booster.inplace_predict(x, validate_features=False), dtype=np.float64)
    if expected.shape != (x.shape[0],) or np.abs(forest.predict(x) - expected).max() > tolerance:
        return None
    return forest
