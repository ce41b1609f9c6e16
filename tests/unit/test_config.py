"""The config file: what an admin writes, and the one-line errors when it is wrong."""

import pytest

from bridge import config as config_module
from bridge.errors import ConfigError
from tests.conftest import BASIC_CONFIG


def test_valid_config_loads_with_defaults(config):
    assert config.slurm.conf_server == "slurmctld.example:6817"
    assert config.kubernetes.namespace == "slurm"
    assert [n.name for n in config.nodesets] == ["cpu", "gpu"]
    assert config.nodesets[0].template == "slurmd.yaml.j2"
    assert config.kubernetes.qps == 20.0


def test_nodeset_for_picks_the_first_matching_nodeset(config):
    assert config.nodeset_for("elastic3").name == "cpu"
    assert config.nodeset_for("gpu02").name == "gpu"


def test_node_in_no_nodeset_is_a_config_error_naming_the_node(config):
    with pytest.raises(ConfigError, match="no nodeset matches node 'other7'"):
        config.nodeset_for("other7")


@pytest.mark.parametrize(("text", "expected"), [
    (BASIC_CONFIG.replace("cluster_name: linux", "cluster_name: 7"),
     "slurm.cluster_name: expected `str`, got `int`"),
    (BASIC_CONFIG.replace("  namespace: slurm", "  namespce: slurm"),
     "kubernetes: object contains unknown field `namespce`"),
    (BASIC_CONFIG.replace("nodes: elastic[1-4]", "nodes: elastic[1-4"),
     "nodesets[0].nodes: malformed hostlist 'elastic[1-4'"),
    (BASIC_CONFIG.replace("name: gpu", "name: cpu"), "nodesets[1].name: nodeset 'cpu' is defined twice"),
    (BASIC_CONFIG.replace("name: gpu", "name: GPU_nodes"), "nodesets[1].name: expected a DNS-1123 label"),
    (BASIC_CONFIG.replace("  conf_server: slurmctld.example:6817\n", ""),
     "slurm: object missing required field `conf_server`"),
    (BASIC_CONFIG.replace("  namespace: slurm", "  namespace: Slurm_NS"), "kubernetes.namespace: expected a DNS-1123"),
    (BASIC_CONFIG + "    template: nothere.j2\n", "nodesets[1].template: no template"),
    ("slurm: [", "line 2: not valid YAML"),
    ("- a\n- b\n", "expected a mapping at the top"),
])
def test_invalid_config_gives_one_line_naming_file_and_field(write_config, text, expected):
    path = write_config(text)
    with pytest.raises(ConfigError) as error:
        config_module.load(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_config_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(ConfigError, match="no such file.*--config"):
        config_module.load(str(tmp_path / "absent.yaml"))


def test_config_is_found_beside_slurm_conf_when_nothing_else_says(monkeypatch, tmp_path):
    monkeypatch.delenv(config_module.ENV_VAR, raising=False)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    assert config_module.resolve_path(None) == str(tmp_path / "k8s-bridge.yaml")
    monkeypatch.setenv(config_module.ENV_VAR, "/x/y.yaml")
    assert config_module.resolve_path(None) == "/x/y.yaml"
    assert config_module.resolve_path("/given.yaml") == "/given.yaml"
