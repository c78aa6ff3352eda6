"""SAGEMAKER_INFERENCE_OUTPUT / SAGEMAKER_INFERENCE_SUPPORTED as container/settings.py reads them:
comma-separated keys, spaces dropped and lower-cased as AWS's XGBoost container does
(serve_utils.get_selected_output_keys), an unknown key a start-up error naming the keys."""

from __future__ import annotations

import pytest

from container.settings import INFERENCE_KEYS, Settings, SettingsError, markdown_table


def test_unset_is_empty_and_the_default_answer() -> None:
    s = Settings.from_env({})
    assert s.inference_output == () and s.inference_supported == ()
    assert Settings.from_env({"SAGEMAKER_INFERENCE_OUTPUT": "  "}).inference_output == ()


@pytest.mark.parametrize(("raw", "keys"), [
    ("predicted_label", ("predicted_label",)),
    ("predicted_label,probability", ("predicted_label", "probability")),
    ("Probabilities, LABELS ,predicted_label", ("probabilities", "labels", "predicted_label")),
    ("raw_score,raw_scores,", ("raw_score", "raw_scores")),
    (",".join(INFERENCE_KEYS), INFERENCE_KEYS),
])
def test_keys_in_the_order_given(raw: str, keys: tuple[str, ...]) -> None:
    assert Settings.from_env({"SAGEMAKER_INFERENCE_OUTPUT": raw}).inference_output == keys


@pytest.mark.parametrize("raw", ["score", "predicted_score", "predicted_label,prob", "label,probability"])
def test_an_unknown_key_names_the_variable_and_the_keys(raw: str) -> None:
    with pytest.raises(SettingsError, match="SAGEMAKER_INFERENCE_OUTPUT") as err:
        Settings.from_env({"SAGEMAKER_INFERENCE_OUTPUT": raw})
    assert ", ".join(INFERENCE_KEYS) in str(err.value)


def test_a_key_twice_is_refused() -> None:
    with pytest.raises(SettingsError, match="twice"):
        Settings.from_env({"SAGEMAKER_INFERENCE_OUTPUT": "probability,Probability"})


def test_supported_bounds_the_output() -> None:
    env = {"SAGEMAKER_INFERENCE_SUPPORTED": "predicted_label,probability,probabilities"}
    assert Settings.from_env({**env, "SAGEMAKER_INFERENCE_OUTPUT": "probability,predicted_label"}
                             ).inference_output == ("probability", "predicted_label")
    assert Settings.from_env(env).inference_supported == ("predicted_label", "probability", "probabilities")
    with pytest.raises(SettingsError, match="labels not in SAGEMAKER_INFERENCE_SUPPORTED"):
        Settings.from_env({**env, "SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,labels"})
    with pytest.raises(SettingsError, match="SAGEMAKER_INFERENCE_SUPPORTED"):
        Settings.from_env({"SAGEMAKER_INFERENCE_SUPPORTED": "predicted_label,margin"})


def test_both_are_in_the_readme_table() -> None:
    table = markdown_table()
    assert "| `SAGEMAKER_INFERENCE_OUTPUT` | (unset) |" in table
    assert "| `SAGEMAKER_INFERENCE_SUPPORTED` | (unset) |" in table
    assert {"SAGEMAKER_INFERENCE_OUTPUT", "SAGEMAKER_INFERENCE_SUPPORTED"} <= set(Settings.variables())
