"""cluster.yaml passes Ray's own validation and says what we mean; runtime_env files carry no secrets."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

from finner.errors import FinnerError
from finner.pipeline.runtime_env import SECRET_ENV_VARS, load_runtime_env, runtime_env_with_secrets
from tests.conftest import REPO, run_module

JOB_KINDS = ("label", "curate", "train", "score", "pipeline")


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def prepared(config: dict) -> dict:
    """What `ray up` validates: the config merged with the provider's defaults."""
    config = prepare_config(copy.deepcopy(config))
    validate_config(config)
    return config


def test_cluster_yaml_passes_ray_validation(cluster):
    config = prepared(cluster)  # raises on a config `ray up` would refuse
    assert set(config["available_node_types"]) == set(cluster["available_node_types"])  # Ray's defaults add no node type
    assert config["head_node_type"] in config["available_node_types"]


def test_fake_cluster_for_the_autoscaling_test_is_valid_and_mirrors_the_gpu_type():
    fake = yaml.safe_load((REPO / "tests" / "fake_cluster.yaml").read_text())
    validate_config(fake)  # the autoscaler validates the raw file (no provider defaults to merge)
    gpu = fake["available_node_types"]["gpu_worker"]
    assert gpu["resources"] == {"CPU": 1, "GPU": 1} and gpu["min_workers"] == 0
    assert sum(t["resources"]["CPU"] for t in fake["available_node_types"].values()) <= 2  # a 2-core machine


def test_ray_validation_is_strict_about_keys(cluster):
    typo = copy.deepcopy(cluster)
    typo["available_node_types"]["gpu_worker"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        prepared(typo)


def test_gpu_workers_start_at_zero_and_go_when_idle(cluster):
    config = prepared(cluster)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    cpu = [t for name, t in types.items() if name != config["head_node_type"] and not t["resources"].get("GPU")]
    assert head["resources"] == {"CPU": 0}, "the head runs job drivers only"
    assert "--num-cpus=0" in " ".join(config["head_start_ray_commands"])
    assert len(gpu) == 1 and gpu[0]["min_workers"] == 0 and gpu[0]["max_workers"] >= 1
    assert cpu and all(t["resources"]["CPU"] > 0 and t["max_workers"] >= 1 for t in cpu)
    assert 0 < config["idle_timeout_minutes"] <= 15


def test_every_node_installs_the_project_with_the_right_torch(cluster):
    config = prepared(cluster)
    gpu = next(t for t in config["available_node_types"].values() if t["resources"].get("GPU"))
    cpu_setup = " && ".join(config["setup_commands"])
    gpu_setup = " && ".join(gpu["worker_setup_commands"])  # replaces setup_commands on GPU nodes
    for setup in (cpu_setup, gpu_setup):
        assert "pip install -q -e ~/finner" in setup and "torch==" in setup
    assert "whl/cpu" in cpu_setup and "whl/cpu" not in gpu_setup
    assert gpu["docker"]["worker_image"].endswith("-gpu")
    assert config["file_mounts"] == {"~/finner": "."}
    assert (REPO / config["file_mounts"]["~/finner"] / "pyproject.toml").exists()


def test_images_match_the_installed_ray_and_python(cluster):
    config = prepared(cluster)
    gpu = next(t for t in config["available_node_types"].values() if t["resources"].get("GPU"))
    tag = f"rayproject/ray:{ray.__version__}-py{sys.version_info.major}{sys.version_info.minor}"
    assert config["docker"]["image"] == f"{tag}-cpu"
    assert gpu["docker"]["worker_image"] == f"{tag}-gpu"


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_runtime_env_is_valid_and_holds_no_secret(kind):
    path = REPO / "runtime_env" / f"{kind}.yaml"
    spec = load_runtime_env(path)
    RuntimeEnv(**spec)  # Ray's own validation of the fields
    assert spec["working_dir"] == "."
    assert not {"pip", "conda", "uv"} & set(spec), "dependencies come from the nodes (cluster.yaml), not per-job envs"
    assert not set(spec.get("env_vars", {})) & set(SECRET_ENV_VARS)
    text = path.read_text()
    assert "hf_" not in text.lower().replace("hf_token", "")


def test_secret_in_a_runtime_env_file_is_refused(tmp_path):
    leaky = tmp_path / "leaky.yaml"
    leaky.write_text("working_dir: .\nenv_vars:\n  HF_TOKEN: hf_abc\n")
    with pytest.raises(FinnerError, match="HF_TOKEN"):
        load_runtime_env(leaky)


def test_secrets_forwarded_only_when_set():
    spec = runtime_env_with_secrets(REPO / "runtime_env/label.yaml", environ={"HF_TOKEN": "hf_x", "ARGILLA_API_KEY": ""})
    assert spec["env_vars"]["HF_TOKEN"] == "hf_x"
    assert "ARGILLA_API_KEY" not in spec["env_vars"]
    assert spec["env_vars"]["PYTHONUNBUFFERED"] == "1"  # the file's own variables stay


def test_runtime_env_cli_prints_json_for_ray_job_submit():
    done = run_module("finner.pipeline.runtime_env", "runtime_env/pipeline.yaml", env={"ARGILLA_API_KEY": "k-123", "HF_TOKEN": ""})
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout)
    assert spec["env_vars"]["ARGILLA_API_KEY"] == "k-123" and "HF_TOKEN" not in spec["env_vars"]
    assert spec["working_dir"] == "."


def test_runtime_env_cli_error_is_one_line(tmp_path):
    done = run_module("finner.pipeline.runtime_env", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot read runtime env") and done.stderr.count("\n") == 1


def test_job_kinds_have_a_runtime_env():
    assert sorted(p.stem for p in Path(REPO / "runtime_env").glob("*.yaml")) == sorted(JOB_KINDS)
