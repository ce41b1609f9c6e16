"""The shipped pod template on real HPC nodes: GPUs, SR-IOV, pinned CPUs, placement, safety.

Each test renders a pod as resume would and checks what a user would look at with
``kubectl get pod -o yaml``; schema validity comes from bridge.validate (kubernetes-validate).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import msgspec
import pytest

from bridge import config as config_module
from bridge import naming, validate
from bridge.errors import ConfigError, TemplateError
from bridge.render import render_pod
from bridge.slurm import NodeFacts

TEMPLATES = Path(__file__).resolve().parents[2] / "pod-templates"


def load(write_config, nodeset: str = "", *, extra: str = ""):
    """A config with one nodeset ``n[1-9]`` plus the given nodeset keys (YAML, indented 4)."""
    body = textwrap.indent(textwrap.dedent(nodeset).strip(), "    ") if nodeset.strip() else ""
    return config_module.load(str(write_config(
        'slurm: {conf_server: "ctl:6817", cluster_name: hpc}\n'
        "log: {file: null}\n"
        f"{extra}"
        "nodesets:\n"
        "  - name: hpc\n"
        '    nodes: "n[1-9]"\n'
        '    image: "slurmd:22.05"\n'
        f"{body}\n")))


def pod(config, gres: tuple[str, ...] = (), *, name: str = "n1", cpus: int = 8, memory: int = 16000):
    return render_pod(config, NodeFacts(name, cpus=cpus, real_memory_mb=memory, gres=gres)).manifest


def limits(manifest) -> dict[str, str]:
    resources = manifest["spec"]["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"]
    return resources["limits"]


def env(manifest) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in manifest["spec"]["containers"][0]["env"]}


def assert_valid(config, facts: NodeFacts) -> None:
    assert validate.check_pod(config, facts) == []


# --- GPUs: the count comes from Slurm's Gres -------------------------------------------------

@pytest.mark.parametrize(("gpus", "gres", "resource", "count"), [
    ("", ("gpu:a100:4",), "nvidia.com/gpu", "4"),
    ("gpus: {vendor: amd}", ("gpu:mi300x:8",), "amd.com/gpu", "8"),
    ("gpus: {sharing: time-slicing}", ("gpu:1",), "nvidia.com/gpu.shared", "1"),
    ("gpus: {sharing: mig}", ("gpu:3g.40gb:2",), "nvidia.com/mig-3g.40gb", "2"),
    ("gpus: {sharing: mig}", ("gpu:a100_1g.5gb:7",), "nvidia.com/mig-1g.5gb", "7"),
    ("gpus: {sharing: time-slicing, resource: nvidia.com/gpu}", ("gpu:1",), "nvidia.com/gpu", "1"),
    ("", ("gpu:h100:4", "gpu:h100:4", "mps:400"), "nvidia.com/gpu", "8"),
])
def test_gpu_resource_and_count_follow_the_slurm_gres(write_config, gpus, gres, resource, count):
    config = load(write_config, gpus)
    manifest = pod(config, gres)
    assert {k: v for k, v in limits(manifest).items() if k not in ("cpu", "memory")} == {resource: count}
    assert env(manifest)["SLURMD_GPU_COUNT"] == count
    assert env(manifest)["SLURMD_GRES"] == ",".join(g for g in gres if g.startswith("gpu"))
    assert_valid(config, NodeFacts("n1", cpus=8, real_memory_mb=16000, gres=gres))


def test_node_without_gpu_gres_gets_no_gpu_and_no_gpu_handling(write_config):
    manifest = pod(load(write_config, "gpus: {vendor: amd}"), ("mps:100",))
    assert set(limits(manifest)) == {"cpu", "memory"}
    assert not any(name.startswith("SLURMD_GPU") for name in env(manifest))


@pytest.mark.parametrize(("gpus", "gres", "expected"), [
    ("gpus: {sharing: time-slicing}", ("gpu:2",), r"gpus\.sharing: node n1 has Gres gpu:2 .* expected Gres gpu:1"),
    ("gpus: {sharing: mig}", ("gpu:1g.10gb:1", "gpu:3g.40gb:1"), r"gpus\.sharing: node n1 .* one MIG profile per node"),
    ("gpus: {sharing: mig}", ("gpu:a100:2",), r"gpus\.sharing: node n1 has Gres gpu:a100:2; expected the MIG profile"),
    ("cpu_pinning: true", (), r"cpu_pinning: node n1 has no RealMemory in Slurm"),
])
def test_nodeset_that_would_make_slurm_and_kubernetes_disagree_is_a_config_error(write_config, gpus, gres, expected):
    config = load(write_config, gpus)
    with pytest.raises(ConfigError) as error:
        render_pod(config, NodeFacts("n1", cpus=8, real_memory_mb=1, gres=gres))
    message = str(error.value)
    assert message.startswith(f"{config.path}: nodesets[0].")
    assert re.search(expected, message) and "\n" not in message


# --- SR-IOV / RDMA ---------------------------------------------------------------------------

def test_each_attachment_is_in_the_multus_annotation_with_its_device(write_config):
    config = load(write_config, """
        networks:
          - {name: sriov-a, resource: intel.com/sriov_netdevice, interface: net1}
          - {name: sriov-b, resource: intel.com/sriov_netdevice, namespace: net-infra}
          - {name: ib, resource: nvidia.com/rdma_ib0, interface: ib0, rdma: true}
        """)
    manifest = pod(config)
    selections = json.loads(manifest["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
    assert selections == [{"name": "sriov-a", "interface": "net1"}, {"name": "sriov-b", "namespace": "net-infra"},
                          {"name": "ib", "interface": "ib0"}]
    assert limits(manifest)["intel.com/sriov_netdevice"] == "2"
    assert limits(manifest)["nvidia.com/rdma_ib0"] == "1"
    assert manifest["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    assert_valid(config, NodeFacts("n1", cpus=8, real_memory_mb=16000))


def test_plain_sriov_needs_no_extra_capability(write_config):
    manifest = pod(load(write_config, "networks: [{name: sriov-a, resource: intel.com/sriov_netdevice}]"))
    assert "securityContext" not in manifest["spec"]["containers"][0]


# --- cgroups ----------------------------------------------------------------------------------

def test_cgroups_make_the_slurmd_container_privileged_and_tell_the_entrypoint(write_config):
    config = load(write_config, """
        cgroups: true
        networks: [{name: ib, resource: nvidia.com/rdma_ib0, rdma: true}]
        """)
    manifest = pod(config)
    # privileged holds every capability IPC_LOCK would add: nothing else in the securityContext.
    assert manifest["spec"]["containers"][0]["securityContext"] == {"privileged": True}
    assert env(manifest)["SLURMD_CGROUPS"] == "1"
    assert_valid(config, NodeFacts("n1", cpus=8, real_memory_mb=16000))


def test_pods_without_cgroups_are_not_privileged(write_config):
    manifest = pod(load(write_config))
    assert "securityContext" not in manifest["spec"]["containers"][0]
    assert "SLURMD_CGROUPS" not in env(manifest)


# --- CPU pinning and hugepages ---------------------------------------------------------------

def test_pinned_pod_is_guaranteed_with_whole_cpus_and_hugepages(write_config):
    config = load(write_config, """
        cpu_pinning: true
        memory_overhead_mb: 512
        hugepages: {size: 2Mi, pages: 512}
        """)
    manifest = pod(config, cpus=32, memory=64000)
    assert limits(manifest) == {"cpu": "32", "memory": "64512Mi", "hugepages-2Mi": "1024Mi"}
    assert validate.qos_class(manifest) == "Guaranteed"
    container = manifest["spec"]["containers"][0]
    assert {"name": "hugepages", "mountPath": "/dev/hugepages"} in container["volumeMounts"]
    assert {"name": "hugepages", "emptyDir": {"medium": "HugePages"}} in manifest["spec"]["volumes"]
    assert_valid(config, NodeFacts("n1", cpus=32, real_memory_mb=64000))


@pytest.mark.parametrize(("resources", "qos"), [
    ({"limits": {"cpu": "2", "memory": "1Gi"}}, "Guaranteed"),
    ({"requests": {"cpu": "2000m", "memory": "1024Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}, "Guaranteed"),
    ({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}, "Burstable"),
    ({"limits": {"cpu": "2"}}, "Burstable"),
    ({}, "BestEffort"),
])
def test_qos_class_follows_kubernetes_rules(resources, qos):
    assert validate.qos_class({"spec": {"containers": [{"name": "slurmd", "resources": resources}]}}) == qos


def test_an_init_container_without_limits_makes_the_pod_burstable():
    guaranteed = {"limits": {"cpu": "1", "memory": "1Gi"}}
    manifest = {"spec": {"initContainers": [{"name": "setup"}],
                         "containers": [{"name": "slurmd", "resources": guaranteed}]}}
    assert validate.qos_class(manifest) == "Burstable"


def test_check_refuses_a_pinned_pod_whose_init_container_is_not_guaranteed(write_config, tmp_path):
    config, path, _ = _site_template(write_config, tmp_path, "  containers:\n",
                                     "  initContainers:\n    - name: setup\n      image: busybox\n  containers:\n",
                                     nodeset="cpu_pinning: true")
    spec_line = path.read_text().splitlines().index("spec:") + 1
    problems = validate.check_pod(config, NodeFacts("n1", cpus=4, real_memory_mb=4000), versions=("1.37",))
    assert problems == [f"{path}:{spec_line}: node n1: spec: cpu_pinning needs the Guaranteed QoS class, "
                        "the pod is Burstable"]


# --- Networking ------------------------------------------------------------------------------

def test_pod_network_is_the_default(write_config):
    spec = pod(load(write_config))["spec"]
    assert "hostNetwork" not in spec and "dnsPolicy" not in spec
    assert spec["containers"][0]["ports"] == [{"name": "slurmd", "containerPort": 6818, "protocol": "TCP"}]


def test_host_network_pods_resolve_cluster_names_and_claim_the_slurmd_port(write_config):
    config = load(write_config, "host_network: true\nslurmd_port: 6820")
    spec = pod(config)["spec"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["containers"][0]["ports"] == [{"name": "slurmd", "containerPort": 6820, "hostPort": 6820,
                                               "protocol": "TCP"}]
    assert_valid(config, NodeFacts("n1", cpus=8, real_memory_mb=16000))


def test_subdomain_makes_short_node_names_resolve(write_config):
    config = load(write_config, "subdomain: slurmd\ncluster_domain: hpc.example", extra="kubernetes: {namespace: batch}\n")
    spec = pod(config)["spec"]
    assert (spec["hostname"], spec["subdomain"]) == ("n1", "slurmd")
    assert spec["dnsConfig"] == {"searches": ["slurmd.batch.svc.hpc.example"]}


# --- Placement -------------------------------------------------------------------------------

def test_placement_settings_reach_the_pod(write_config):
    config = load(write_config, """
        node_selector: {pool: hpc}
        affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a, b]}]}]}}}
        tolerations: [{key: dedicated, operator: Equal, value: hpc, effect: NoSchedule}]
        topology_spread:
          - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule}
          - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {team: a}}}
        capacity: {type: spot, label: kubernetes.azure.com/scalesetpriority, taint: kubernetes.azure.com/scalesetpriority}
        priority_class: slurm-spot
        runtime_class: nvidia
        image_pull_secrets: [regcred]
        service_account: slurmd
        termination_grace_period: 20
        """)
    spec = pod(config)["spec"]
    assert spec["nodeSelector"] == {"pool": "hpc", "kubernetes.azure.com/scalesetpriority": "spot"}
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "hpc", "effect": "NoSchedule"},
        {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Exists", "effect": "NoSchedule"}]
    own, explicit = spec["topologySpreadConstraints"]
    assert own["labelSelector"] == {"matchLabels": {naming.NODESET_LABEL: "hpc", **naming.owner_labels("hpc")}}
    assert explicit["labelSelector"] == {"matchLabels": {"team": "a"}}
    assert (spec["priorityClassName"], spec["runtimeClassName"]) == ("slurm-spot", "nvidia")
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["serviceAccountName"] == "slurmd" and "automountServiceAccountToken" not in spec
    assert spec["terminationGracePeriodSeconds"] == 20
    assert_valid(config, NodeFacts("n1", cpus=8, real_memory_mb=16000))


def test_pods_carry_no_api_token_unless_a_service_account_is_named(write_config):
    assert pod(load(write_config))["spec"]["automountServiceAccountToken"] is False


# --- preStop: power the Slurm node down when Kubernetes, not the bridge, stops the pod --------

def _run_prestop(manifest, tmp_path: Path, state: str | None, node: str) -> list[str]:
    """Run the pod's preStop command with a fake scontrol; the scontrol calls it made."""
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if state is not None:
        (bin_dir / "scontrol").write_text(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s|' \"$a\" >> \"$CALLS\"; done; echo >> \"$CALLS\"\n"
            f"[ \"$1\" = -o ] && echo 'NodeName=x Arch=x86_64 State={state} Reason=none'\nexit 0\n")
        (bin_dir / "scontrol").chmod(0o755)
    for tool in ("sed", "timeout"):  # all the script runs besides scontrol: never this host's scontrol
        (bin_dir / tool).symlink_to(shutil.which(tool, path="/usr/bin:/bin"))
    command = manifest["spec"]["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    environ = {"PATH": str(bin_dir), "CALLS": str(calls), "SLURM_NODENAME": node, "POD_NAME": "hpc-x"}
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("state", ["ALLOCATED", "MIXED+CLOUD", "IDLE+CLOUD"])
def test_prestop_powers_down_a_node_kubernetes_takes_away_so_its_jobs_are_requeued_now(write_config, tmp_path, state):
    node = "n1 $(touch pwned); `id`"
    calls = _run_prestop(pod(load(write_config)), tmp_path, state, node)
    assert calls[-1] == (f"update|NodeName={node}|State=POWER_DOWN_FORCE|"
                         "Reason=slurm-k8s-bridge: pod hpc-x stopped by Kubernetes|")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("state", ["IDLE+CLOUD+POWERING_DOWN", "DOWN+CLOUD+POWERED_DOWN+NOT_RESPONDING",
                                   "IDLE+CLOUD+POWER_DOWN", "MIXED+CLOUD+POWERING_UP"])
def test_prestop_leaves_a_node_the_bridge_is_powering_down_alone(write_config, tmp_path, state):
    calls = _run_prestop(pod(load(write_config)), tmp_path, state, "n1")
    assert [c for c in calls if c.startswith("update")] == []


def test_prestop_never_fails_the_shutdown_without_scontrol(write_config, tmp_path):
    assert _run_prestop(pod(load(write_config)), tmp_path, None, "n1") == []


def test_drain_on_stop_can_be_turned_off(write_config):
    assert "lifecycle" not in pod(load(write_config, "drain_on_stop: false"))["spec"]["containers"][0]


# --- Safety: Slurm strings are data ----------------------------------------------------------

EVIL = ["a: b", "x\ny: z", "{{ 7*7 }}", "{% raw %}", "- item", "&a *a", '"; exit 1; "', "#comment", "${HOME}"]


@pytest.mark.parametrize("evil", EVIL)
def test_slurm_strings_reach_the_manifest_only_as_data(write_config, evil):
    config = load(write_config, "networks: [{name: net-a, resource: example.com/nic}]")
    facts = NodeFacts("n1", cpus=2, real_memory_mb=2000, features=(evil,), gres=(f"gpu:{evil}:1",))
    manifest = render_pod(config, facts).manifest
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    assert env(manifest)["SLURMD_GRES"] == f"gpu:{evil}:1"
    assert limits(manifest)["nvidia.com/gpu"] == "1"
    assert validate.check_pod(config, facts) == []


@pytest.mark.parametrize("node", ["Gpu_Node.1", "UPPER", "a" * 300, "x: y", "n\n1", "{{ node }}", "node_1",
                                  "-lead", "ünï"])
def test_any_slurm_node_name_gets_a_valid_stable_pod_and_keeps_its_exact_name(write_config, node):
    config = _AnyNode(load(write_config))  # a hostlist cannot spell every such name
    facts = NodeFacts(node, cpus=1, real_memory_mb=100)
    manifest = render_pod(config, facts).manifest
    name, hostname = manifest["metadata"]["name"], manifest["spec"]["hostname"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", hostname) and len(hostname) <= 63
    assert manifest["metadata"]["annotations"][naming.NODE_ANNOTATION] == node
    assert manifest["spec"]["containers"][0]["args"][2] == node
    assert env(manifest)["SLURM_NODENAME"] == node
    assert render_pod(config, facts).manifest["metadata"]["name"] == name
    assert validate.check_pod(config, facts) == []


def test_pod_names_of_look_alike_nodes_differ():
    names = ["node_1", "node-1", "Node-1", "node.1", "NODE_1", "a" * 300, "a" * 301]
    pods = {naming.pod_name("hpc", n) for n in names}
    assert len(pods) == len(names)


# --- Every shipped template validates; template errors say where -----------------------------

@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.j2")))
@pytest.mark.parametrize("example", ["cpu", "h100-rdma", "mig-inference", "spot-batch"])
def test_every_template_with_every_example_nodeset_is_valid(template, example):
    examples = TEMPLATES.parent / "examples"
    config = config_module.load(str(examples / example / "k8s-bridge.yaml"))
    config = msgspec.structs.replace(config, nodesets=[msgspec.structs.replace(n, template=template)
                                                       for n in config.nodesets])
    line = next(l for l in (examples / example / "slurm-nodes.conf").read_text().splitlines() if l.startswith("NodeName="))
    fields = dict(token.split("=", 1) for token in line.split())
    node = re.sub(r"\[(\d+)-\d+\]", r"\1", fields["NodeName"])
    facts = NodeFacts(node, cpus=int(fields["CPUs"]), real_memory_mb=int(fields["RealMemory"]),
                      gres=tuple(g for g in fields.get("Gres", "").split(",") if g))
    assert validate.check_pod(config, facts, versions=validate.SUPPORTED) == []


def _site_template(write_config, tmp_path, old: str, new: str, nodeset: str = ""):
    source = (TEMPLATES / "slurmd.yaml.j2").read_text()
    assert old in source
    (tmp_path / "t").mkdir(exist_ok=True)
    (tmp_path / "t" / "site.yaml.j2").write_text(source.replace(old, new, 1))
    config = load(write_config, f"template: site.yaml.j2\n{nodeset}", extra=f"templates_dir: {tmp_path / 't'}\n")
    return config, tmp_path / "t" / "site.yaml.j2", _line_of(source.replace(old, new, 1), new.splitlines()[-1])


def _line_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if text in line)


def test_schema_violation_names_template_line_node_field_and_version(write_config, tmp_path):
    config, path, line = _site_template(write_config, tmp_path, "  enableServiceLinks: false\n",
                                        "  enableServiceLinks: false\n  nodeselector: {\"pool\": \"a\"}\n")
    problems = validate.check_pod(config, NodeFacts("n3", cpus=2, real_memory_mb=2000))
    assert problems == [f"{path}:{line}: node n3: spec.nodeselector: unknown field 'nodeselector' (Kubernetes {v})"
                        for v in validate.SUPPORTED]


def test_wrong_type_from_a_site_value_names_the_line_that_wrote_it(write_config, tmp_path):
    config, path, line = _site_template(
        write_config, tmp_path, "  terminationGracePeriodSeconds: {{ nodeset.termination_grace_period | tojson }}\n",
        "  terminationGracePeriodSeconds: {{ nodeset.values.grace | tojson }}\n", nodeset="values: {grace: soon}")
    problems = validate.check_pod(config, NodeFacts("n2", cpus=2, real_memory_mb=2000), versions=("1.27",))
    assert problems == [f"{path}:{line}: node n2: spec.terminationGracePeriodSeconds: 'soon' is not of type "
                        "'integer', 'null' (Kubernetes 1.27)"]


def test_yaml_that_does_not_parse_names_the_template_line(write_config, tmp_path):
    config, path, line = _site_template(write_config, tmp_path, "  restartPolicy: Always\n",
                                        "  restartPolicy: Always\n  broken: [unclosed\n")
    with pytest.raises(TemplateError):
        render_pod(config, NodeFacts("n4", cpus=2, real_memory_mb=2000))
    problems = validate.check_pod(config, NodeFacts("n4", cpus=2, real_memory_mb=2000))
    assert len(problems) == 1
    assert re.match(rf"{re.escape(str(path))}:{line}: node n4: rendered YAML does not parse", problems[0])


def test_bad_quantity_and_overcommitted_device_are_reported(write_config, tmp_path):
    config, path, line = _site_template(
        write_config, tmp_path, "      resources: {{ resources | tojson }}\n",
        '      resources: {"requests": {"cpu": "4 cores", "example.com/nic": "1"}, "limits": {"cpu": "4", "example.com/nic": "2"}}\n')
    problems = validate.check_pod(config, NodeFacts("n1", cpus=2, real_memory_mb=2000), versions=("1.37",))
    assert f"{path}:{line}: node n1: spec.containers[0].resources.requests.cpu: '4 cores' is not a quantity" in problems
    assert any("resources.requests.example.com/nic: must equal its limit" in p for p in problems)


@pytest.mark.parametrize(("text", "expected"), [("1.27", "1.27"), ("v1.30.2", "1.30"), ("1.37", "1.37")])
def test_kubernetes_versions_within_the_supported_range_are_accepted(text, expected):
    assert validate.version(text) == expected


@pytest.mark.parametrize("text", ["1.26", "1.38", "2.0", "latest", "1"])
def test_kubernetes_versions_outside_the_range_are_refused(text):
    with pytest.raises(Exception, match="--kubernetes-version"):
        validate.version(text)


def test_quantities_parse_as_kubernetes_does():
    assert validate.quantity("500m") * 2 == 1
    assert validate.quantity("1Gi") == validate.quantity("1024Mi") == 2**30
    assert validate.quantity("1e3") == validate.quantity("1k") == 1000
    assert validate.quantity("4 cores") is None and validate.quantity("") is None


class _AnyNode:
    """The config, with its one nodeset standing for any node name."""

    def __init__(self, config) -> None:
        self._config = config

    def __getattr__(self, name):
        return getattr(self._config, name)

    def nodeset_for(self, node: str):
        return self._config.nodesets[0]


# --- slurm-k8s-bridge render --check -----------------------------------------------------------

def _cli(monkeypatch, capsys, config_path: Path, *args: str) -> tuple[int, str, str]:
    from bridge import cli
    from tests.fakes import FakeSlurm

    facts = {f"n{i}": NodeFacts(f"n{i}", cpus=4, real_memory_mb=4000, gres=("gpu:2",) if i == 9 else ())
             for i in range(1, 10)}
    monkeypatch.setattr("bridge.slurm.CommandSlurm", lambda *a, **k: FakeSlurm(facts))
    monkeypatch.setattr("sys.argv", ["slurm-k8s-bridge", "--config", str(config_path), *args])
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_render_check_reports_each_pod_valid_with_its_qos(write_config, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, _path(write_config, "cpu_pinning: true"), "render", "n[1-2]", "--check")
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"n{i}: pod hpc-n{i} valid for Kubernetes 1.27, 1.37 (QoS Guaranteed)" for i in (1, 2)]


def test_render_check_against_the_users_kubernetes_version(write_config, monkeypatch, capsys):
    code, out, _ = _cli(monkeypatch, capsys, _path(write_config), "render", "n1", "--check", "--kubernetes-version", "v1.31.4")
    assert code == 0 and out == "n1: pod hpc-n1 valid for Kubernetes 1.31 (QoS Guaranteed)\n"


def test_render_check_fails_with_one_line_per_problem(write_config, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, _path(write_config, "gpus: {sharing: time-slicing}"),
                          "render", "n1,n9", "--check")
    assert code == 65
    assert out == "n1: pod hpc-n1 valid for Kubernetes 1.27, 1.37 (QoS Guaranteed)\n"
    lines = err.splitlines()
    assert lines[0].startswith("slurm-k8s-bridge: config: ") and "nodesets[0].gpus.sharing: node n9" in lines[0]
    assert lines[-1] == "slurm-k8s-bridge: template: 1 of 2 pod(s) not valid (see above)"


def test_render_check_refuses_an_image_whose_slurmd_the_controller_cannot_accept(write_config, monkeypatch, capsys):
    from bridge.slurmversion import SlurmVersion
    from tests.fakes import FakeSlurm

    # The nodeset's image is tagged slurmd:22.05: four releases behind a 24.11 slurmctld.
    monkeypatch.setattr(FakeSlurm, "version", SlurmVersion.parse("24.11.5"), raising=False)
    code, out, err = _cli(monkeypatch, capsys, _path(write_config), "render", "n1", "--check")
    assert code == 65 and out == ""
    assert err.splitlines()[0].startswith("slurm-k8s-bridge: version: n1: slurmd 22.05 of image slurmd:22.05")
    monkeypatch.setattr(FakeSlurm, "version", SlurmVersion.parse("22.05.8"), raising=False)
    code, out, err = _cli(monkeypatch, capsys, _path(write_config), "render", "n1", "--check")
    assert (code, err) == (0, "")
def test_render_check_names_a_template_that_raises_while_rendering(write_config, tmp_path, monkeypatch, capsys):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "pod.yaml.j2").write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  x: {{ node.cpus // 0 }}\n")
    config = load(write_config, "template: pod.yaml.j2", extra=f"templates_dir: {tmp_path / 't'}\n")
    code, out, err = _cli(monkeypatch, capsys, Path(config.path), "render", "n1", "--check")
    assert (code, out) == (65, "")
    assert err.splitlines() == [
        f"slurm-k8s-bridge: template: {tmp_path / 't' / 'pod.yaml.j2'}:4: node n1: ZeroDivisionError: "
        "integer division or modulo by zero",
        "slurm-k8s-bridge: template: 1 of 1 pod(s) not valid (see above)"]


@pytest.mark.parametrize("args", [["--check", "--kubernetes-version", "1.20"], ["--kubernetes-version", "1.30"]])
def test_render_refuses_an_unsupported_or_lone_kubernetes_version(write_config, monkeypatch, capsys, args):
    code, _, err = _cli(monkeypatch, capsys, _path(write_config), "render", "n1", *args)
    assert code == 64 and err.startswith("slurm-k8s-bridge: usage: --kubernetes-version")


def _path(write_config, nodeset: str = "") -> Path:
    return Path(load(write_config, nodeset).path)


def test_mig_single_strategy_asks_for_slices_as_gpus_and_skips_device_linking(write_config):
    manifest = pod(load(write_config, "gpus: {sharing: mig, resource: nvidia.com/gpu}"), ("gpu:3",))
    assert limits(manifest)["nvidia.com/gpu"] == "3"
    assert env(manifest)["SLURMD_GPU_SHARING"] == "mig"  # the entrypoint leaves slices to NVML


# --- The researcher's view: site filesystems, users, /tmp, RDMA memlock ------------------------

FILESYSTEMS = """
filesystems:
  - {name: home, path: /home, host_path: /home, mount_propagation: HostToContainer}
  - {name: scratch, path: /scratch, nfs: {server: nfs.example.org, path: /export/scratch}}
  - {name: projects, path: /projects, claim: projects-cephfs}
  - {name: apps, path: /apps, host_path: /srv/apps, read_only: true}
"""


def volumes(manifest) -> dict[str, dict]:
    return {v["name"]: v for v in manifest["spec"]["volumes"]}


def mounts(manifest) -> dict[str, dict]:
    return {m["mountPath"]: m for m in manifest["spec"]["containers"][0]["volumeMounts"]}


def test_each_filesystem_form_is_mounted_at_the_submit_hosts_path(write_config):
    config = load(write_config, FILESYSTEMS)
    manifest = pod(config)
    assert volumes(manifest)["fs-home"]["hostPath"] == {"path": "/home", "type": "Directory"}
    assert volumes(manifest)["fs-scratch"]["nfs"] == {"server": "nfs.example.org", "path": "/export/scratch",
                                                      "readOnly": False}
    assert volumes(manifest)["fs-projects"]["persistentVolumeClaim"] == {"claimName": "projects-cephfs",
                                                                         "readOnly": False}
    assert volumes(manifest)["fs-apps"]["hostPath"]["path"] == "/srv/apps"
    assert mounts(manifest)["/home"] == {"name": "fs-home", "mountPath": "/home", "readOnly": False,
                                         "mountPropagation": "HostToContainer"}
    assert mounts(manifest)["/apps"]["readOnly"] is True
    assert "mountPropagation" not in mounts(manifest)["/scratch"]
    assert_valid(config, NodeFacts("n1", cpus=8, real_memory_mb=16000))


def test_node_has_a_private_size_limited_tmp(write_config):
    manifest = pod(load(write_config, "tmp_size: 2Gi"))
    assert mounts(manifest)["/tmp"]["name"] == "tmp"
    assert volumes(manifest)["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}
    assert volumes(pod(load(write_config)))["tmp"]["emptyDir"]["sizeLimit"] == "10Gi"


@pytest.mark.parametrize(("users", "source"), [
    ("users: {config_map: site-users}", {"configMap": {"name": "site-users"}}),
    ("users: {secret: site-users}", {"secret": {"secretName": "site-users"}}),
])
def test_site_users_are_mounted_read_only_where_the_entrypoint_reads_them(write_config, users, source):
    config = load(write_config, users)
    manifest = pod(config)
    assert volumes(manifest)["users"] == {"name": "users", **source}
    assert mounts(manifest)[config_module.USERS_DIR] == {"name": "users", "mountPath": config_module.USERS_DIR,
                                                         "readOnly": True}
    assert_valid(config, NodeFacts("n1", cpus=8, real_memory_mb=16000))


def test_without_users_or_filesystems_the_pod_mounts_only_its_own(write_config):
    manifest = pod(load(write_config))
    assert set(mounts(manifest)) == {"/etc/munge", "/run/munge", "/var/spool/slurmd", "/tmp"}


@pytest.mark.parametrize("evil", ["/home/a: b", "/home/x\ny: z", "/home/{{ 7*7 }}", "/home/\"; rm -rf x"])
def test_filesystem_values_reach_the_manifest_only_as_data(write_config, evil):
    quoted = json.dumps(evil)
    config = load(write_config, f"filesystems: [{{name: home, path: {quoted}, nfs: {{server: nfs1, path: {quoted}}}}}]")
    manifest = pod(config)
    assert mounts(manifest)[evil]["name"] == "fs-home"
    assert volumes(manifest)["fs-home"]["nfs"]["path"] == evil
    assert validate.check_pod(config, NodeFacts("n1", cpus=8, real_memory_mb=16000)) == []


def test_rdma_nodeset_tells_the_entrypoint_to_check_locked_memory(write_config):
    rdma = pod(load(write_config, "networks: [{name: ib0, resource: nvidia.com/rdma_ib0, rdma: true},"
                                  " {name: eth9, resource: intel.com/sriov}]"))
    assert env(rdma)["SLURMD_RDMA_NETWORKS"] == "ib0"
    assert "SLURMD_RDMA_NETWORKS" not in env(pod(load(write_config)))
