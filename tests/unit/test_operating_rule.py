"""Operating thresholds per class: the Wilson bound, the choice of the lowest threshold that keeps
the target precision, the declared target_precision_<label> keys, and the serving rule (the
same labels from plain floats and from NumPy, the same devices training counted)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from modelformat.gender.operating import NO_LABEL, OperatingPoints, class_scores
from training.errors import UserError
from training.gender import operating
from training.gender.task import common
from training.hyperparameters import validate


def test_the_wilson_bound_equals_the_published_values() -> None:
    # 8 of 10: Wilson's 95% interval (0.4902, 0.9433), as statsmodels' proportion_confint(8, 10,
    # method="wilson") and scipy's binomtest(8, 10).proportion_ci(method="wilson") give it.
    assert operating.wilson_lower(8, 10) == pytest.approx(0.4901624715, abs=1e-9)
    # 12 devices, all right: not enough to promise 0.8.
    assert operating.wilson_lower(12, 12) == pytest.approx(0.7575059933, abs=1e-9)
    assert operating.wilson_lower(0, 20) == 0.0 and operating.wilson_lower(0, 0) == 0.0
    for k, n in [(1, 1), (37, 50), (640, 1000), (999, 1000), (5, 7)]:
        expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson").low
        assert operating.wilson_lower(k, n) == pytest.approx(expected, abs=1e-12), (k, n)
    many = operating.wilson_lower(np.array([8, 12, 0]), np.array([10, 12, 0]))
    assert many.tolist() == pytest.approx([0.4901624715, 0.7575059933, 0.0], abs=1e-9)


def _naive(y: np.ndarray, p: np.ndarray, positive: bool, target: float) -> tuple[float, int, int] | None:
    """The lowest threshold (of 0.5 and every score) whose labelled devices' lower bound reaches
    the target, by trying each one."""
    score, leans = class_scores(p, positive)
    truth = (y == 1) if positive else (y == 0)
    for t in sorted({0.5, *score[leans].tolist()}):
        chosen = leans & (score >= t)
        n, k = int(chosen.sum()), int((chosen & truth).sum())
        if n and operating.wilson_lower(k, n) >= target:
            return t, n, k
    return None


@pytest.mark.parametrize("seed", range(6))
def test_the_chosen_threshold_is_the_lowest_that_keeps_the_target(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.round(rng.random(600), 2 + seed % 3)  # rounded: ties at every threshold
    y = (rng.random(600) < p ** 1.5).astype(np.int32)
    goal = {"F": 0.55 + 0.05 * seed, "M": 0.6 + 0.06 * seed}
    points = operating.choose(y, p, ["F", "M"], goal)
    for positive, name in ((False, "F"), (True, "M")):
        expected = _naive(y, p, positive, goal[name])
        if expected is None:
            assert points["thresholds"][name] is None and name in points["not_reached"]
            continue
        t, n, k = expected
        labelled = OperatingPoints("F", "M", points["thresholds"]["F"], points["thresholds"]["M"]).labels(p)
        assert sum(v == name for v in labelled) == n == points["support"][name]
        assert sum(v == name and (yy == 1) == positive for v, yy in zip(labelled, y, strict=True)) == k
        assert points["precision"][name] == k / n and points["coverage"][name] == n / len(y)
        assert points["precision_lower_bound"][name] >= goal[name]
        if t != 0.5:
            assert points["thresholds"][name] == t
        curve = points["curve"][name]
        assert any(c["support"] == n for c in curve) and len(curve) <= operating.CURVE_POINTS + 1


def test_a_class_that_cannot_reach_its_target_gets_no_threshold_and_a_plain_statement() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.3, 0.7, 400)
    y = (rng.random(400) < 0.5).astype(np.int32)  # the model knows nothing
    points = operating.choose(y, p, ["F", "M"], {"F": 0.9, "M": 0.9})
    assert points["thresholds"] == {"F": None, "M": None}
    assert points["coverage"] == {} and points["unlabelled"] == 1.0
    text = points["not_reached"]["F"]
    assert text.startswith("F cannot reach the target precision 0.9 at any threshold on the 400 validation")
    assert text.endswith("F devices are never labelled")
    assert operating.metrics(points) == {"coverage_F": 0.0, "coverage_M": 0.0}
    assert set(OperatingPoints("F", "M", None, None).labels(p)) == {NO_LABEL}
    # a class the model never leans to
    never = operating.choose(y, np.full(400, 0.8), ["F", "M"], {"F": 0.5})
    assert "leans to F for none of the 400 validation devices" in never["not_reached"]["F"]
    assert never["not_reached"]["M"].startswith("no target precision for M")


def test_every_leaning_device_labelled_is_threshold_one_half() -> None:
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0])
    points = operating.choose(y, p, [0, 1], {"0": 0.1, "1": 0.1})
    assert points["thresholds"] == {"0": 0.5, "1": 0.5} and points["unlabelled"] == 0.0


def test_target_keys_are_checked_against_the_classes_found() -> None:
    params = {"target_precision": 0.8, "target_precision_F": 0.9}
    assert operating.targets(params, ["F", "M"]) == {"F": 0.9, "M": 0.8}
    assert operating.targets({"target_precision": None}, ["F", "M"]) == {}
    assert operating.targets({"target_precision": None, "target_precision_1": 0.7}, [0, 1]) == {"1": 0.7}
    with pytest.raises(UserError, match=r"'target_precision_X' names the class 'X', but the labels are "
                                        r"\['F', 'M'\]; use target_precision_F or target_precision_M"):
        operating.targets({"target_precision_X": 0.8}, ["F", "M"])


def test_target_precision_keys_are_declared_hyperparameters() -> None:
    declared = common()
    got = validate({"target_precision_F": "0.85", "target_precision": "0.8"}, declared, "x")
    assert got["target_precision"] == 0.8 and got["target_precision_F"] == 0.85
    assert "target_precision_<label>" not in got
    assert validate({}, declared, "x")["target_precision"] is None
    with pytest.raises(UserError, match="'target_precision_F' = 1.5 must be <= 1.0"):
        validate({"target_precision_F": 1.5}, declared, "x")
    with pytest.raises(UserError, match="did you mean 'target_precision'"):
        validate({"target_precison": 0.8}, declared, "x")
    with pytest.raises(UserError, match="Unknown hyperparameter 'target_precision_'"):
        validate({"target_precision_": 0.8}, declared, "x")


def test_plain_floats_and_numpy_give_the_same_labels() -> None:
    rng = np.random.default_rng(5)
    edges = [0.5, 0.7, 0.3, 1.0 - 0.7, 0.0, 1.0, math.nan, np.nextafter(0.5, 0), np.nextafter(0.7, 0)]
    for t_neg, t_pos in [(0.7, 0.7), (0.5, 0.5), (None, 0.7), (0.7, None), (None, None)]:
        rule = OperatingPoints("F", "M", t_neg, t_pos)
        p = [*edges, *rng.random(40).tolist()]
        few = [v for chunk in range(0, len(p), 8) for v in rule.labels(p[chunk:chunk + 8])]
        assert few == rule.labels(np.asarray(p)), (t_neg, t_pos)
        assert rule.labels([0.5])[0] == ("M" if t_pos == 0.5 else NO_LABEL)  # the tie leans positive
        assert rule.labels([math.nan]) == [NO_LABEL]


def test_the_manifest_part_drops_the_curve_and_serving_reads_it() -> None:
    p = np.linspace(0.01, 0.99, 99)
    y = (p >= 0.5).astype(np.int32)  # every device the model leans to M is an M
    points = operating.choose(y, p, ["F", "M"], {"M": 0.9})
    part = operating.manifest_part(points)
    assert "curve" not in part and part["thresholds"]["F"] is None
    rule = OperatingPoints.from_manifest({"classes": ["F", "M"], "operating_points": part})
    assert rule == OperatingPoints("F", "M", None, 0.5)
    assert OperatingPoints.from_manifest({"classes": ["F", "M"]}) is None
