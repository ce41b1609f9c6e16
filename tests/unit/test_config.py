"""The config file: what an admin writes, and the one-line errors when it is wrong."""

import re

import pytest

from bridge import config as config_module
from bridge.errors import ConfigError
from tests.conftest import BASIC_CONFIG


def test_valid_config_loads_with_defaults(config):
    assert config.slurm.conf_server == "slurmctld.example:6817"
    assert config.kubernetes.namespace == "slurm"
    assert [n.name for n in config.nodesets] == ["cpu", "gpu"]
    assert config.nodesets[0].template == "slurmd.yaml.j2"
    assert (config.kubernetes.qps, config.kubernetes.burst, config.kubernetes.concurrency) == (500.0, 500, 20)


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
    (BASIC_CONFIG + "    template: " + "t" * 300 + ".j2\n", "nodesets[1].template: cannot read '"),
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


def test_missing_config_file_says_how_to_point_at_one(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"absent.yaml: no such file$"):  # named on purpose: nothing to add
        config_module.load(str(tmp_path / "absent.yaml"))
    # Found by default (a hook: Slurm gives it SLURM_CONF alone, no --config, no other variable).
    monkeypatch.delenv(config_module.ENV_VAR, raising=False)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    monkeypatch.setattr(config_module, "DEFAULT_PATH", str(tmp_path / "etc" / "k8s-bridge.yaml"))
    with pytest.raises(ConfigError, match=re.escape(
            f"{tmp_path}/k8s-bridge.yaml: no such file, nor {tmp_path}/etc/k8s-bridge.yaml (the hooks read "
            f"k8s-bridge.yaml beside $SLURM_CONF, the only variable Slurm gives them, else {tmp_path}/etc/k8s-bridge.yaml; "
            f"the CLI also takes --config or ${config_module.ENV_VAR})")):
        config_module.load(None)


def test_a_config_file_that_is_not_utf8_or_is_empty_is_one_clear_line(tmp_path):
    path = tmp_path / "k8s-bridge.yaml"
    path.write_bytes(b"\xff\xfeslurm: {}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not UTF-8 text (byte 0)")):
        config_module.load(str(path))
    path.write_text("")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: the file is empty")):
        config_module.load(str(path))
    path.write_text("slurm: \x01\n")
    with pytest.raises(ConfigError) as raised:
        config_module.load(str(path))
    assert "\n" not in str(raised.value) and "::" not in str(raised.value) and "not valid YAML" in str(raised.value)


def test_config_is_found_beside_slurm_conf_when_nothing_else_says(monkeypatch, tmp_path):
    monkeypatch.delenv(config_module.ENV_VAR, raising=False)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    default = tmp_path / "etc" / "k8s-bridge.yaml"
    monkeypatch.setattr(config_module, "DEFAULT_PATH", str(default))
    assert config_module.resolve_path(None) == str(tmp_path / "k8s-bridge.yaml")  # neither is there: named first
    # A site whose slurm.conf is elsewhere (SLURM_CONF=/etc/slurm-llnl/slurm.conf) but whose
    # config is at the documented default: the hooks find it, as check says they do.
    default.parent.mkdir()
    default.write_text("slurm: {}\n")
    assert config_module.resolve_path(None) == str(default)
    (tmp_path / "k8s-bridge.yaml").write_text("slurm: {}\n")
    assert config_module.resolve_path(None) == str(tmp_path / "k8s-bridge.yaml")  # beside slurm.conf comes first
    from bridge.check import hooks_config_path

    assert hooks_config_path({"SLURM_CONF": str(tmp_path / "slurm.conf")}) == str(tmp_path / "k8s-bridge.yaml")
    (tmp_path / "k8s-bridge.yaml").unlink()
    assert hooks_config_path({"SLURM_CONF": str(tmp_path / "slurm.conf")}) == str(default)
    monkeypatch.setenv(config_module.ENV_VAR, "/x/y.yaml")
    assert config_module.resolve_path(None) == "/x/y.yaml"
    assert config_module.resolve_path("/given.yaml") == "/given.yaml"


# --- Nodesets for HPC hardware (issue #4) ------------------------------------------------------

HPC_NODESET = """
slurm: {conf_server: "ctl:6817"}
log: {file: null}
nodesets:
  - name: hpc
    nodes: n[1-4]
    image: slurmd:22.05
"""


def test_hpc_nodeset_keys_load_into_typed_settings(write_config):
    config = config_module.load(str(write_config(HPC_NODESET + """
    gpus: {sharing: mig}
    cpu_pinning: true
    hugepages: {size: 1Gi, pages: 8}
    networks: [{name: rdma0, resource: nvidia.com/rdma_ib0, interface: net1, rdma: true}]
    capacity: {type: spot}
    subdomain: slurmd
""")))
    nodeset = config.nodesets[0]
    assert (nodeset.gpus.vendor, nodeset.gpus.sharing) == ("nvidia", "mig")
    assert nodeset.cpu_pinning and (nodeset.hugepages.size, nodeset.hugepages.pages) == ("1Gi", 8)
    assert nodeset.networks[0].rdma and nodeset.networks[0].interface == "net1"
    assert (nodeset.capacity.type, nodeset.capacity.label) == ("spot", "karpenter.sh/capacity-type")
    assert nodeset.drain_on_stop and nodeset.slurmd_port == 6818


RICH_PLACEMENT = {
    "topology_spread": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2,
                         "nodeTaintsPolicy": "Honor", "matchLabelKeys": ["team"],
                         "labelSelector": {"matchLabels": {"app": "x"},
                                           "matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]}}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["8"]}],
                 "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["w1"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "preference": {"matchExpressions": [{"key": "z", "operator": "Exists"}]}}]},
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "zone", "namespaces": ["slurm"], "labelSelector": {"matchLabels": {"app": "x"}},
                 "matchLabelKeys": ["slurm-k8s-bridge/job-id"], "mismatchLabelKeys": ["team"]}],
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "podAffinityTerm": {"topologyKey": "zone",
                                                  "namespaceSelector": {"matchLabels": {"ns": "a"}}}}]}},
}


def _with_each_node_replaced(tree, by):
    """Every copy of ``tree`` with one of its values (at any depth) replaced by ``by``."""
    import copy

    def paths(node, path):
        yield path
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            yield from paths(child, (*path, key))

    for path in list(paths(tree, ()))[1:]:
        mutated = copy.deepcopy(tree)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = copy.deepcopy(by)
        yield path, mutated


@pytest.mark.parametrize("by", [None, 8, "x", True, [], {}, [8], {"k": 8}, ["x"], [None]],
                         ids=["null", "number", "string", "bool", "empty-list", "empty-map", "list-of-number",
                              "map", "list-of-string", "list-of-null"])
def test_no_shape_of_placement_gives_a_traceback(write_config, by):
    """Whatever a YAML slip puts anywhere in topology_spread or affinity, the config loads or
    says what is wrong in one line (the hooks' exit 78), never an exception that would give the
    resuming nodes back as an internal error."""
    import json

    base = json.loads(json.dumps(RICH_PLACEMENT))
    assert config_module.load(str(write_config(HPC_NODESET + "    " + "\n    ".join(
        f"{k}: {json.dumps(v)}" for k, v in base.items()) + "\n")))
    for path, mutated in _with_each_node_replaced(base, by):
        text = HPC_NODESET + "".join(f"    {key}: {json.dumps(value)}\n" for key, value in mutated.items())
        try:
            config_module.load(str(write_config(text)))
        except ConfigError as e:
            assert "\n" not in str(e), (path, str(e))


def test_placement_kubernetes_accepts_loads_and_renders_as_written(write_config):
    """The checks refuse only what kube-apiserver refuses: a rich, valid placement loads, and
    the pod carries it (a constraint without labelSelector counts the nodeset's pods)."""
    from bridge.placement import placement

    config = config_module.load(str(write_config(HPC_NODESET + """
    env: {my-var.1_X: '1', _PRIVATE: '2'}
    topology_spread:
    - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, minDomains: 2,
       nodeAffinityPolicy: Honor, nodeTaintsPolicy: Ignore, matchLabelKeys: [team]}
    - {maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway,
       labelSelector: {matchExpressions: [{key: app, operator: Exists}]}}
    - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, minDomains: null,
       nodeTaintsPolicy: null, labelSelector: null}
    - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
       labelSelector: {matchLabels: {app: ~}, matchExpressions: [{key: tier, operator: In, values: [~, gpu]}]}}
    affinity:
      nodeAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          nodeSelectorTerms:
          - matchExpressions: [{key: nvidia.com/gpu.product, operator: In, values: [NVIDIA-H100-80GB-HBM3]},
                               {key: cores, operator: Gt, values: ['8']}]
            matchFields: [{key: metadata.name, operator: NotIn, values: [worker-9]}]
        preferredDuringSchedulingIgnoredDuringExecution:
        - {weight: 100, preference: {matchExpressions: [{key: zone, operator: DoesNotExist}]}}
      podAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
        - {topologyKey: topology.kubernetes.io/zone, labelSelector: {matchLabels: {app.kubernetes.io/name: slurmd}},
           matchLabelKeys: [slurm-k8s-bridge/job-id], mismatchLabelKeys: [team]}
      podAntiAffinity:
        preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 1
          podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: slurmd}}}
""")))
    nodeset = config.nodesets[0]
    rendered = placement(nodeset, cluster="linux")
    assert rendered["affinity"] == nodeset.affinity
    assert rendered["topology_spread"][0]["labelSelector"]["matchLabels"]["slurm-k8s-bridge/nodeset"] == nodeset.name
    assert rendered["topology_spread"][1]["labelSelector"] == {"matchExpressions": [{"key": "app", "operator": "Exists"}]}
    # labelSelector: null is no selector: the nodeset's own pods are counted, not none.
    assert rendered["topology_spread"][2]["labelSelector"] == rendered["topology_spread"][0]["labelSelector"]


@pytest.mark.parametrize(("keys", "expected"), [
    ("gpus: {vendr: amd}", "nodesets[0].gpus: object contains unknown field `vendr`"),
    ("gpus: {vendor: intel}", "nodesets[0].gpus.vendor: invalid enum value 'intel'; expected one of 'nvidia', 'amd'"),
    ("gpus: {vendor: amd, sharing: mig}", "nodesets[0].gpus.sharing: expected 'none' for AMD GPUs"),
    ("gpus: {resource: gpu}", "nodesets[0].gpus.resource: expected an extended resource name"),
    ("gpus: {resource: kubernetes.io/gpu}", "nodesets[0].gpus.resource: expected an extended resource name"),
    ("networks: [{name: a}]", "nodesets[0].networks[0]: object missing required field `resource`"),
    ("networks: [{name: a, resource: rdma}]", "nodesets[0].networks[0].resource: expected the device resource"),
    ("networks: [{name: A_B, resource: x.com/y}]", "nodesets[0].networks[0].name: expected a NetworkAttachmentDefinition name"),
    ("networks: [{name: a, resource: x.com/y, interface: eth0}]", "nodesets[0].networks[0].interface: expected an interface name"),
    ("networks: [{name: a, resource: x.com/y, interface: net1}, {name: b, resource: x.com/y, interface: net1}]",
     "nodesets[0].networks[1].interface: 'net1' is used by an earlier attachment"),
    ("networks: [{name: a, resource: x.com/y}]\n    annotations: {k8s.v1.cni.cncf.io/networks: b}",
     "nodesets[0].annotations: k8s.v1.cni.cncf.io/networks is written from networks"),
    ("hugepages: {size: 4Mi, pages: 1}", "nodesets[0].hugepages.size: invalid enum value '4Mi'; expected one of '2Mi', '1Gi'"),
    ("hugepages: {size: 2Mi, pages: 0}", "nodesets[0].hugepages.pages: expected at least 1"),
    ("capacity: {type: preemptible}", "nodesets[0].capacity.type: invalid enum value 'preemptible'; expected one of 'spot', 'on-demand'"),
    ("capacity: {type: spot}\n    node_selector: {karpenter.sh/capacity-type: on-demand}",
     "nodesets[0].capacity: node_selector sets karpenter.sh/capacity-type='on-demand', expected 'spot'"),
    ("env: {NVIDIA_VISIBLE_DEVICES: all}", "nodesets[0].env.NVIDIA_VISIBLE_DEVICES: would show the pod other GPUs"),
    ("env: {SLURMD_GPU_COUNT: '8'}", "nodesets[0].env.SLURMD_GPU_COUNT: set by the pod template"),
    ("env: {'A=B': x}", "nodesets[0].env: expected variable names of letters, digits, '_', '-' and '.', not "
                        "starting with a digit or '..', not '.' (what Kubernetes 1.27-1.31 accept), got 'A=B'"),
    ("env: {'.': x}", "nodesets[0].env: expected variable names of letters, digits, '_', '-' and '.', not starting with a"
                      " digit or '..', not '.'"),
    # Shapes a YAML slip gives: one line naming the field, never a traceback.
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{matchExpressions: []}]}}",
     "nodesets[0].affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution: expected a node selector "
     "(nodeSelectorTerms), got [{'matchExpressions': []}]"),
    ("affinity: {podAntiAffinity: [{topologyKey: zone}]}",
     "nodesets[0].affinity.podAntiAffinity: expected a mapping (requiredDuringSchedulingIgnoredDuringExecution, ...)"),
    ("affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [gpu]}}",
     "nodesets[0].affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]: expected a mapping "
     "(weight, preference), got 'gpu'"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:"
     " [{matchFields: [metadata.name=w1]}]}}}",
     ".matchFields[0]: expected a mapping with key, operator and values, got 'metadata.name=w1'"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:"
     " [{matchExpressions: [{key: cores, operator: Gt, values: 8}]}]}}}",
     ".matchExpressions[0].values: expected a list of values, got 8"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:"
     " [{matchExpressions: [{key: cores, operator: Gt, values: [8]}]}]}}}",
     ".matchExpressions[0].values: expected strings (quote a number: '8'), got 8"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:"
     " [{matchExpressions: [{key: gpu, operator: [In], values: [a]}]}]}}}",
     ".matchExpressions[0].operator: expected one of In, NotIn, Exists, DoesNotExist, Gt, Lt, got ['In']"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:"
     " [{matchExpressions: [{key: null, operator: Exists}]}]}}}",
     ".matchExpressions[0].key: expected a label key like 'example.com/name', got None"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:"
     " [{matchFields: [{key: metadata.name, operator: In, values: [Worker_1]}]}]}}}",
     ".matchFields[0].values: expected a node name (DNS-1123 subdomain), got 'Worker_1'"),
    ("affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone,"
     " labelSelector: {matchLabels: [app=x]}}]}}",
     "podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchLabels: expected a mapping of "
     "labels, got ['app=x']"),
    ("affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone,"
     " labelSelector: {matchLabels: {gpus: 8}}}]}}",
     ".labelSelector.matchLabels.gpus: expected a label value (quote a number: '8'), got 8"),
    ("affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone,"
     " namespaces: [Slurm]}]}}",
     "requiredDuringSchedulingIgnoredDuringExecution[0].namespaces: expected namespace names (DNS-1123 labels), got 'Slurm'"),
    ("topology_spread: [zone]", "nodesets[0].topology_spread[0]: expected `object`, got `str`"),
    # Pod terms' label keys: the server merges `key In/NotIn` the pod's value into the selector.
    ("affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone,"
     " matchLabelKeys: [slurm-k8s-bridge/job-id]}]}}",
     "requiredDuringSchedulingIgnoredDuringExecution[0].matchLabelKeys: needs a labelSelector (Kubernetes refuses"
     " label keys without one)"),
    ("affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, podAffinityTerm:"
     " {topologyKey: zone, labelSelector: {matchLabels: {app: x}}, mismatchLabelKeys: [bad key]}}]}}",
     "podAffinityTerm.mismatchLabelKeys[0]: expected a label key like 'example.com/name', got 'bad key'"),
    ("affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone,"
     " labelSelector: {matchLabels: {slurm-k8s-bridge/job-id: '1'}}, matchLabelKeys: [slurm-k8s-bridge/job-id]}]}}",
     "[0].matchLabelKeys[0]: expected a label key that the labelSelector and the list do not name already"),
    ("affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone,"
     " labelSelector: {}, matchLabelKeys: [team, team]}]}}",
     "[0].matchLabelKeys[1]: expected a label key that the labelSelector and the list do not name already"),
    ("affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone,"
     " labelSelector: {}, matchLabelKeys: [team], mismatchLabelKeys: [team]}]}}",
     "[0].matchLabelKeys[0]: expected a label key that is not also in mismatchLabelKeys, got 'team'"),
    ("affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone,"
     " labelSelector: {}, matchLabelKeys: [8]}]}}",
     "[0].matchLabelKeys[0]: expected a label key (quote a number: '8'), got 8"),
    ("topology_spread: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, matchLabelKeys: app}]",
     "nodesets[0].topology_spread[0].matchLabelKeys: expected a list of label keys, got 'app'"),
    ("topology_spread: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, matchLabelKeys: [app],"
     " labelSelector: {matchLabels: {app: slurmd}}}]",
     "nodesets[0].topology_spread[0].matchLabelKeys[0]: expected a label key that the labelSelector does not name"),
    ("topology_spread: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule,"
     " labelSelector: {matchExpressions: 5}}]",
     "nodesets[0].topology_spread[0].labelSelector.matchExpressions: expected a list, got 5"),
    ("env: {'DÉJÀ': x}", "nodesets[0].env: expected variable names of letters, digits"),
    ("env: {'1GPU': x}", "nodesets[0].env: expected variable names of letters, digits, '_', '-' and '.', not starting with a digit"),
    ("env: {'MY VAR': x}", "nodesets[0].env: expected variable names of letters"),
    ("topology_spread: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]",
     "nodesets[0].topology_spread[0].maxSkew: expected a whole number above 0, got 0"),
    ("topology_spread: [{topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]",
     "nodesets[0].topology_spread[0].maxSkew: expected a whole number above 0, got None"),
    ("topology_spread: [{maxSkew: 1, whenUnsatisfiable: DoNotSchedule}]",
     "nodesets[0].topology_spread[0].topologyKey: expected a node label key like 'topology.kubernetes.io/zone', got None"),
    ("topology_spread: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedul}]",
     "nodesets[0].topology_spread[0].whenUnsatisfiable: expected DoNotSchedule or ScheduleAnyway, got 'DoNotSchedul'"),
    ("topology_spread: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway},"
     " {maxSkew: 2, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway}]",
     "nodesets[0].topology_spread[1]: a second constraint for topologyKey zone with ScheduleAnyway; expected one each"),
    ("topology_spread: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, minDomains: 2}]",
     "nodesets[0].topology_spread[0].minDomains: expected a whole number above 0, with whenUnsatisfiable: DoNotSchedule, got 2"),
    ("topology_spread: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, nodeTaintsPolicy: honor}]",
     "nodesets[0].topology_spread[0].nodeTaintsPolicy: expected Honor or Ignore, got 'honor'"),
    ("topology_spread: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule,"
     " matchLabelKeys: [slurm-k8s-bridge/nodeset]}]",
     "nodesets[0].topology_spread[0].matchLabelKeys[0]: expected a label key that the labelSelector does not name"),
    ("topology_spread: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule,"
     " labelSelector: {matchExpressions: [{key: app, operator: In}]}}]",
     "nodesets[0].topology_spread[0].labelSelector.matchExpressions[0].values: expected some values with operator In, got []"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}",
     "nodesets[0].affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: "
     "expected at least one node selector term, got []"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:"
     " [{matchExpressions: [{key: gpu, operator: in, values: [h100]}]}]}}}",
     "nodesets[0].affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
     ".matchExpressions[0].operator: expected one of In, NotIn, Exists, DoesNotExist, Gt, Lt, got 'in'"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:"
     " [{matchExpressions: [{key: cores, operator: Gt, values: ['8', '16']}]}]}}}",
     ".matchExpressions[0].values: expected one value with operator Gt, got ['8', '16']"),
    ("affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms:"
     " [{matchFields: [{key: metadata.labels, operator: In, values: [w1]}]}]}}}",
     ".matchFields[0].key: expected metadata.name (the only node field), got 'metadata.labels'"),
    ("affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution:"
     " [{weight: 200, preference: {matchExpressions: [{key: gpu, operator: Exists}]}}]}}",
     "nodesets[0].affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: expected 1-100, got 200"),
    ("affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution:"
     " [{labelSelector: {matchLabels: {app: slurmd}}, topologyKey: ''}]}}",
     "nodesets[0].affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: "
     "expected a node label key like 'kubernetes.io/hostname', got ''"),
    ("affinity: {podAffinity: {preferredDuringSchedulingIgnoredDuringExecution:"
     " [{weight: 50, podAffinityTerm: {topologyKey: zone, labelSelector: {matchLabels: {'/app': x}}}}]}}",
     "nodesets[0].affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm"
     ".labelSelector.matchLabels: expected label keys like 'example.com/name', got '/app'"),
    ("slurmd_args: [-N, other]", "nodesets[0].slurmd_args: '-N' is set by the pod template"),
    ("slurmd_args: ['--conf-server=x:1']", "nodesets[0].slurmd_args: '--conf-server=x:1' is set by the pod template"),
    ("slurmd_args: [-Nother]", "nodesets[0].slurmd_args: '-Nother' is set by the pod template"),
    ("slurmd_args: [-vNother]", "nodesets[0].slurmd_args: '-vNother' is set by the pod template"),
    ("slurmd_args: ['--conf-s=evil:6817']", "nodesets[0].slurmd_args: '--conf-s=evil:6817' is set by the pod template"),
    ("subdomain: Slurm_D", "nodesets[0].subdomain: expected a DNS-1123 label, got 'Slurm_D'"),
    ("image_pull_secrets: [Reg_Cred]", "nodesets[0].image_pull_secrets[0]: expected a DNS-1123 subdomain"),
    ("runtime_class: NVIDIA", "nodesets[0].runtime_class: expected a DNS-1123 subdomain"),
    ("labels: {team: 'a b'}", "nodesets[0].labels.team: expected a label value"),
    ("node_selector: {'bad key!': x}", "nodesets[0].node_selector: expected label keys"),
    ("slurmd_port: 70000", "nodesets[0].slurmd_port: expected a port 1-65535"),
    ("termination_grace_period: -1", "nodesets[0].termination_grace_period: expected 0 or more seconds"),
    ("memory_overhead_mb: -5", "nodesets[0].memory_overhead_mb: expected 0 or more"),
    ("cpu_pinning: maybe", "nodesets[0].cpu_pinning: expected `bool`"),
])
def test_invalid_hpc_nodeset_gives_one_line_naming_the_field(write_config, keys, expected):
    path = write_config(HPC_NODESET + f"    {keys}\n")
    with pytest.raises(ConfigError) as error:
        config_module.load(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(("setting", "expected"), [
    ("resume: {poll: 0}", "resume.poll: expected at least 0.05"),
    ("resume: {max_attempts: 0}", "resume.max_attempts: expected at least 1"),
    ("resume: {deadline: -5}", "resume.deadline: expected at least"),
    ("kubernetes: {timeout: 0}", "kubernetes.timeout: expected at least"),
])
def test_settings_that_would_break_the_hooks_are_refused(write_config, setting, expected):
    text = BASIC_CONFIG.replace("kubernetes:\n  namespace: slurm\n", "") + setting + "\n"
    if setting.startswith("resume"):
        text = BASIC_CONFIG.replace("resume:\n  state_dir: {state_dir}\n", "") + setting + "\n"
    with pytest.raises(ConfigError, match=expected):
        config_module.load(str(write_config(text)))


# --- Site filesystems, users, /tmp, cgroups: one line naming the field ----------------------

@pytest.mark.parametrize(("keys", "expected"), [
    ("filesystems: [{name: home, path: home, host_path: /home}]",
     "nodesets[0].filesystems[0].path: expected an absolute path"),
    ("filesystems: [{name: home, path: /home/../etc, host_path: /home}]",
     "nodesets[0].filesystems[0].path: expected an absolute path without '..'"),
    ("filesystems: [{name: key, path: /etc/munge, host_path: /srv/munge}]",
     "nodesets[0].filesystems[0].path: '/etc/munge' would mount over /etc/munge"),
    ("filesystems: [{name: run, path: /run/munge/x, host_path: /srv/x}]",
     "nodesets[0].filesystems[0].path: '/run/munge/x' would mount over /run/munge"),
    ("filesystems: [{name: spool, path: /var/spool, host_path: /srv/x}]",
     "nodesets[0].filesystems[0].path: '/var/spool' would mount over /var/spool/slurmd"),
    ("filesystems: [{name: conf, path: /etc/slurm, host_path: /srv/x}]",
     "nodesets[0].filesystems[0].path: '/etc/slurm' would mount over /etc/slurm"),
    ("filesystems: [{name: tmp, path: /tmp, host_path: /scratch}]",
     "nodesets[0].filesystems[0].path: '/tmp' would mount over /tmp"),
    ("filesystems: [{name: usr, path: /usr, host_path: /srv/usr}]",
     "nodesets[0].filesystems[0].path: '/usr' would hide the image's /usr"),
    ("filesystems: [{name: root, path: /, host_path: /srv}]",
     "nodesets[0].filesystems[0].path: '/' would hide the image's /"),
    ("filesystems: [{name: home, path: /home, host_path: /home}, {name: home, path: /scratch, host_path: /scratch}]",
     "nodesets[0].filesystems[1].name: 'home' is used by an earlier filesystem"),
    ("filesystems: [{name: a, path: /home, host_path: /home}, {name: b, path: /home, claim: homes}]",
     "nodesets[0].filesystems[1].path: '/home' is mounted by an earlier filesystem"),
    ("filesystems: [{name: Home_1, path: /home, host_path: /home}]",
     "nodesets[0].filesystems[0].name: expected a DNS-1123 label"),
    ("filesystems: [{name: scratch, path: /scratch, nfs: {path: /export}}]",
     "nodesets[0].filesystems[0].nfs: object missing required field `server`"),
    ("filesystems: [{name: scratch, path: /scratch, nfs: {server: nfs1}}]",
     "nodesets[0].filesystems[0].nfs: object missing required field `path`"),
    ("filesystems: [{name: scratch, path: /scratch, nfs: {server: '', path: /export}}]",
     "nodesets[0].filesystems[0].nfs.server: expected an NFS server's host name or IP address"),
    ("filesystems: [{name: scratch, path: /scratch, nfs: {server: nfs1, path: export}}]",
     "nodesets[0].filesystems[0].nfs.path: expected an absolute exported path"),
    ("filesystems: [{name: scratch, path: /scratch}]",
     "nodesets[0].filesystems[0]: expected exactly one of host_path, nfs, claim, got none"),
    ("filesystems: [{name: scratch, path: /scratch, host_path: /scratch, claim: s}]",
     "nodesets[0].filesystems[0]: expected exactly one of host_path, nfs, claim, got host_path, claim"),
    ("filesystems: [{name: home, path: /home, host_path: home}]",
     "nodesets[0].filesystems[0].host_path: expected an absolute directory other than /"),
    ("filesystems: [{name: p, path: /projects, claim: Projects_PVC}]",
     "nodesets[0].filesystems[0].claim: expected a PersistentVolumeClaim name"),
    ("filesystems: [{name: p, path: /projects, claim: p, mount_propagation: HostToContainer}]",
     "nodesets[0].filesystems[0].mount_propagation: expected 'None' unless host_path is set"),
    ("filesystems: [{name: h, path: /home, host_path: /home, mount_propagation: Bidirectional}]",
     "nodesets[0].filesystems[0].mount_propagation: invalid enum value 'Bidirectional'; "
     "expected one of 'None', 'HostToContainer'"),
    ("filesystems: [{name: h, path: /home, hostpath: /home}]",
     "nodesets[0].filesystems[0]: object contains unknown field `hostpath`"),
    ("users: {}", "nodesets[0].users: expected exactly one of config_map, secret"),
    ("users: {config_map: a, secret: b}", "nodesets[0].users: expected exactly one of config_map, secret"),
    ("users: {config_map: Site_Users}", "nodesets[0].users.config_map: expected a DNS-1123 subdomain"),
    ("tmp_size: lots", "nodesets[0].tmp_size: expected a positive quantity like '10Gi', got 'lots'"),
    ("tmp_size: '0'", "nodesets[0].tmp_size: expected a positive quantity"),
    ("cgroup_plugins: true", "nodesets[0].cgroup_plugins: renamed; use cgroups: true"),
    ("cgroup_plugins: false", "nodesets[0].cgroup_plugins: renamed"),
    ("cgroups: yes please", "nodesets[0].cgroups: expected `bool`"),
    ("env: {SLURMD_RDMA_NETWORKS: x}", "nodesets[0].env.SLURMD_RDMA_NETWORKS: set by the pod template"),
])
def test_invalid_filesystem_users_or_tmp_gives_one_line_naming_the_field(write_config, keys, expected):
    path = write_config(HPC_NODESET + f"    {keys}\n")
    with pytest.raises(ConfigError) as error:
        config_module.load(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_each_filesystem_form_loads(write_config):
    config = config_module.load(str(write_config(HPC_NODESET + """
    filesystems:
      - {name: home, path: /home, host_path: /home, mount_propagation: HostToContainer}
      - {name: scratch, path: /scratch, nfs: {server: "fd00::5", path: /export/scratch}}
      - {name: projects, path: /projects, claim: projects-cephfs}
      - {name: apps, path: /opt/software, host_path: /apps, read_only: true}
    users: {secret: site-users}
    tmp_size: 500Mi
""")))
    nodeset = config.nodesets[0]
    assert [fs.name for fs in nodeset.filesystems] == ["home", "scratch", "projects", "apps"]
    assert nodeset.filesystems[1].nfs.server == "fd00::5" and nodeset.filesystems[3].read_only
    assert (nodeset.users.secret, nodeset.tmp_size, nodeset.cgroups) == ("site-users", "500Mi", False)
