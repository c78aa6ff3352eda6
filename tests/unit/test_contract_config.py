"""Paths, settings, hyperparameter decoding and validation, SM_* export."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from container.paths import MLPaths, base_dir
from container.settings import Settings, SettingsError, markdown_table
from tests import factories
from training.environment import TrainingEnvironment, decode_value
from training.errors import UserError
from training.hyperparameters import Hyperparameter as HP
from training.hyperparameters import validate


def test_base_dir_defaults_and_overrides() -> None:
    assert base_dir({}) == Path("/opt/ml")
    assert base_dir({"SAGEMAKER_BASE_DIR": "/x"}) == Path("/x")
    assert base_dir({"SM_BASE_DIR": "/y", "SAGEMAKER_BASE_DIR": "/x"}) == Path("/y")
    p = MLPaths(Path("/b"))
    assert p.hyperparameters == Path("/b/input/config/hyperparameters.json")
    assert p.channel("train") == Path("/b/input/data/train")
    assert p.failure == Path("/b/output/failure")
    assert p.output_data_dir == Path("/b/output/data")
    assert p.checkpoints_dir == Path("/b/checkpoints")


def test_settings_parse_and_name_the_bad_variable() -> None:
    s = Settings.from_env({"SAGEMAKER_BIND_TO_PORT": "9000", "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
                           "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20", "SAGEMAKER_BATCH": "True"})
    assert (s.port, s.workers, s.max_payload_bytes, s.batch) == (9000, 3, 20 * 1024 * 1024, True)
    assert s.default_accept == "application/json"
    with pytest.raises(SettingsError, match="SAGEMAKER_MAX_PAYLOAD_IN_MB"):
        Settings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "500"})
    with pytest.raises(SettingsError, match="SAGEMAKER_BATCH"):
        Settings.from_env({"SAGEMAKER_BATCH": "maybe"})
    with pytest.raises(SettingsError, match="SAGEMAKER_BIND_TO_PORT"):
        Settings.from_env({"SAGEMAKER_BIND_TO_PORT": "http"})
    assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in markdown_table()


@pytest.mark.parametrize(("raw", "decoded"), [
    ("10", 10), ("0.5", 0.5), ("true", True), ('"adam"', "adam"), ("adam", "adam"),
    ("[1, 2]", [1, 2]), ("", ""),
])
def test_hyperparameter_values_decode_json_aware(raw: str, decoded: object) -> None:
    assert decode_value(raw) == decoded


def test_declared_hyperparameters_validate() -> None:
    declared = [HP("eta", float, 0.3, "", min=0.0, max=1.0), HP("depth", int, 6, "", min=1),
                HP("solver", str, "a", "", choices=("a", "b")), HP("flag", bool, False, "")]
    assert validate({"eta": "0.1", "depth": "4.0", "flag": "true"}, declared, "x") == {
        "eta": 0.1, "depth": 4, "solver": "a", "flag": True}
    with pytest.raises(UserError, match="did you mean 'depth'"):
        validate({"dept": 3}, declared, "x")
    with pytest.raises(UserError, match="'eta' = 2 must be <= 1.0"):
        validate({"eta": 2}, declared, "x")
    with pytest.raises(UserError, match="'depth' = 'deep' is not a valid int"):
        validate({"depth": "deep"}, declared, "x")
    with pytest.raises(UserError, match="must be one of: 'a', 'b'"):
        validate({"solver": "c"}, declared, "x")
    assert validate({"solver": "none"}, [HP("solver", str, "a", "", choices=("a", "none"))], "x") == {"solver": "none"}
    with pytest.raises(UserError, match="'depth' needs a value"):
        validate({"depth": None}, declared, "x")
    with pytest.raises(UserError, match="'depth' = 2.5 is not a valid int"):
        validate({"depth": 2.5}, declared, "x")


def test_environment_reads_sparse_local_mode_configs_and_exports_sm_vars(tmp_path: Path) -> None:
    paths = factories.opt_ml(tmp_path, {"num_round": 5, "sagemaker_program": "x.py",
                                        "_tuning_objective_metric": "validation:roc_auc"},
                             {"train": {"TrainingInputMode": "File"}, "my-data.v2": {}})
    env = TrainingEnvironment.load(paths, {"TRAINING_JOB_NAME": "job-1"})
    assert env.hyperparameters == {"num_round": 5}
    assert env.tuning_objective == "validation:roc_auc"
    assert env.current_host == "algo-1-x1y2z" and env.is_master
    sm = env.sm_env_vars()
    assert sm["SM_CHANNEL_TRAIN"] == str(paths.channel("train"))
    assert sm["SM_CHANNEL_MY-DATA.V2"] == str(paths.channel("my-data.v2"))
    assert sm["SM_HPS"] == '{"num_round": 5}'
    assert sm["SM_HP_NUM_ROUND"] == "5"
    assert sm["SM_HOSTS"] == '["algo-1-x1y2z"]'
    assert sm["SM_MODEL_DIR"] == str(paths.model_dir)
    assert env.job_name == "job-1"


def test_hosts_are_sorted_and_master_is_first(tmp_path: Path) -> None:
    paths = factories.opt_ml(tmp_path)
    paths.resourceconfig.write_text('{"current_host": "algo-2", "hosts": ["algo-2", "algo-10", "algo-1"]}')
    env = TrainingEnvironment.load(paths)
    assert env.hosts == ["algo-1", "algo-10", "algo-2"]
    assert not env.is_master


def test_cpus_come_from_the_container_not_the_host(tmp_path: Path) -> None:
    from container import resources

    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a 1.5-CPU quota
    assert resources.cgroup_cpu_limit(tmp_path) == 1.5
    assert resources.available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU still runs one worker
    assert resources.available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert resources.cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert resources.cgroup_cpu_limit(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert resources.cgroup_cpu_limit(v1) == 3.0
    assert Settings.from_env({}).workers == resources.available_cpus()


def test_train_checks_its_folders_are_writable_before_reading_data(tmp_path: Path) -> None:
    from training import cli

    blocked = tmp_path / "model"
    blocked.write_text("a file where the model folder should be")
    with pytest.raises(UserError, match=r"model is not writable by uid \d+"):
        cli.check_writable([blocked])
    cli.check_writable([tmp_path / "fresh" / "output"])  # created when missing


def test_writing_the_failure_file_never_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training import cli

    (tmp_path / "output").write_text("not a folder")
    cli.write_failure(MLPaths(tmp_path), "ClientError: something to fix")
    err = capsys.readouterr().err
    assert "could not write" in err and "the failure was: ClientError: something to fix" in err


def test_dropping_privileges_outside_the_image_changes_nothing(tmp_path: Path) -> None:
    from container.privileges import drop_to

    assert drop_to("", [tmp_path]) is False
    assert drop_to("no-such-user-anywhere", [tmp_path]) is False
    assert os.geteuid() == os.getuid()


@pytest.mark.parametrize("url", ["mysql://a@b/c", "postgresql://x@h:notaport/db", "garbage"])
def test_a_database_url_the_store_cannot_use_fails_start_up_naming_it(url: str) -> None:
    with pytest.raises(SettingsError, match="MLAPP_DATABASE_URL"):
        Settings.from_env({"MLAPP_DATABASE_URL": url})
    assert Settings.from_env({"MLAPP_DATABASE_URL": "postgresql://u@h:5432/db"}).database_url


@pytest.mark.parametrize(("raw", "expected"), [("0", 0.0), ("100", 100.0), ("5000", 5000.0), ("2.5", 2.5)])
def test_the_batch_rows_cap_is_a_rate_and_zero_means_no_cap(raw: str, expected: float) -> None:
    assert Settings.from_env({"MLAPP_JOB_MAX_ROWS_PER_SECOND": raw}).job_max_rows_per_second == expected


@pytest.mark.parametrize("raw", ["-1", "inf", "nan", "fast"])
def test_the_batch_rows_cap_refuses_what_is_not_a_rate(raw: str) -> None:
    with pytest.raises(SettingsError, match="MLAPP_JOB_MAX_ROWS_PER_SECOND"):
        Settings.from_env({"MLAPP_JOB_MAX_ROWS_PER_SECOND": raw})


@pytest.mark.parametrize("raw", ["inf", "nan"])
def test_no_number_setting_takes_a_non_finite_value(raw: str) -> None:
    with pytest.raises(SettingsError, match="MLAPP_LEASE_SECONDS"):
        Settings.from_env({"MLAPP_LEASE_SECONDS": raw})
