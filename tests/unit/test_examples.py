"""examples/: each one renders, from its own slurm.conf lines, the pod a user would check.

Every example directory holds the bridge config (k8s-bridge.yaml), the slurm.conf lines of its
nodes (slurm-nodes.conf) and, for GPUs, the gres.conf for slurmctld. The tests take the node's
shape from slurm-nodes.conf, as slurmctld would report it, so the Slurm and Kubernetes halves
of an example cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import config as config_module
from bridge import hostlist, validate
from bridge.render import render_pod
from bridge.slurm import NodeFacts, split_gres

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "k8s-bridge.yaml").is_file())


def _fields(line: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in line.split() if "=" in token)


def node_lines(example: str) -> list[dict[str, str]]:
    text = (EXAMPLES / example / "slurm-nodes.conf").read_text()
    return [_fields(line) for line in text.splitlines() if line.startswith("NodeName=")]


def facts_of(line: dict[str, str], node: str) -> NodeFacts:
    """What ``scontrol show node`` reports for a node of that slurm.conf line."""
    return NodeFacts(node, cpus=int(line["CPUs"]), real_memory_mb=int(line["RealMemory"]),
                     gres=tuple(g for g in line.get("Gres", "").split(",") if g),
                     features=tuple(f for f in line.get("Features", "").split(",") if f))


def pod_of(example: str) -> tuple[dict[str, Any], NodeFacts, Any]:
    config = config_module.load(str(EXAMPLES / example / "k8s-bridge.yaml"))
    line = node_lines(example)[0]
    facts = facts_of(line, hostlist.expand(line["NodeName"])[0])
    return render_pod(config, facts, job_id=7).manifest, facts, config


def slurmd(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]


def test_there_are_the_four_documented_examples():
    assert set(NAMES) >= {"cpu", "h100-rdma", "mig-inference", "spot-batch"}


@pytest.mark.parametrize("example", NAMES)
def test_example_pods_validate_against_oldest_and_newest_kubernetes(example):
    config = config_module.load(str(EXAMPLES / example / "k8s-bridge.yaml"))
    for line in node_lines(example):
        nodes = hostlist.expand(line["NodeName"])
        for node in (nodes[0], nodes[-1]):  # every node line is covered by a nodeset
            assert validate.check_pod(config, facts_of(line, node), versions=validate.SUPPORTED) == []


@pytest.mark.parametrize("example", NAMES)
def test_example_pods_are_guaranteed_with_the_slurm_nodes_cpus_and_memory(example):
    pod, facts, config = pod_of(example)
    resources = slurmd(pod)["resources"]
    overhead = config.nodesets[0].memory_overhead_mb
    assert resources["requests"] == resources["limits"]
    assert resources["limits"]["cpu"] == str(facts.cpus)
    assert resources["limits"]["memory"] == f"{facts.real_memory_mb + overhead}Mi"
    assert validate.qos_class(pod) == "Guaranteed"


def test_cpu_example_has_no_devices_and_resolves_by_short_name():
    pod, _, _ = pod_of("cpu")
    assert set(slurmd(pod)["resources"]["limits"]) == {"cpu", "memory"}
    assert pod["spec"]["subdomain"] == "slurmd"
    assert pod["spec"]["dnsConfig"] == {"searches": ["slurmd.slurm.svc.cluster.local"]}
    assert "k8s.v1.cni.cncf.io/networks" not in pod["metadata"]["annotations"]


def test_h100_example_asks_for_the_8_gpus_slurm_counts_and_one_rdma_device_per_rail():
    pod, facts, _ = pod_of("h100-rdma")
    limits = slurmd(pod)["resources"]["limits"]
    assert facts.gres_count("gpu") == 8 and limits["nvidia.com/gpu"] == "8"
    assert {k: v for k, v in limits.items() if "rdma" in k} == {f"nvidia.com/rdma_rail{i}": "1" for i in range(8)}
    assert limits["hugepages-1Gi"] == "64Gi"
    assert {"name": "hugepages", "emptyDir": {"medium": "HugePages"}} in pod["spec"]["volumes"]
    assert slurmd(pod)["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    assert pod["spec"]["nodeSelector"]["karpenter.sh/capacity-type"] == "on-demand"


def test_h100_example_attaches_every_rail_without_taking_the_default_route():
    pod, _, _ = pod_of("h100-rdma")
    selections = json.loads(pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
    assert [s["interface"] for s in selections] == [f"net{i}" for i in range(1, 9)]
    assert all("default-route" not in s for s in selections)
    attachment = yaml.safe_load((EXAMPLES / "h100-rdma" / "network-attachments.yaml").read_text())
    ipam = json.loads(attachment["spec"]["config"])["ipam"]
    assert "routes" not in ipam and "gateway" not in ipam
    assert attachment["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"] == "nvidia.com/rdma_rail0"
    assert selections[0]["name"] == attachment["metadata"]["name"]


def test_h100_example_tells_the_entrypoint_what_gres_conf_expects():
    pod, _, _ = pod_of("h100-rdma")
    env = {e["name"]: e.get("value") for e in slurmd(pod)["env"]}
    assert env["SLURMD_GPU_COUNT"] == "8" and env["SLURMD_GRES"] == "gpu:h100:8"
    assert env["SLURMD_GPU_VENDOR"] == "nvidia" and env["SLURMD_GPU_SHARING"] == "none"


@pytest.mark.parametrize("example", ["h100-rdma", "mig-inference"])
def test_gres_conf_describes_the_gres_of_the_example_nodes(example):
    lines = [_fields(line) for line in (EXAMPLES / example / "gres.conf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    config = config_module.load(str(EXAMPLES / example / "k8s-bridge.yaml"))
    for node_line in node_lines(example):
        conf = next(c for c in lines if c["NodeName"] == node_line["NodeName"])
        name, gres_type, count = split_gres(node_line["Gres"])
        if conf.get("AutoDetect") == "nvml":
            # slurmd counts what NVML shows the pod, the device plugin's grant: every node's pod
            # must ask for as many slices of that profile as slurm.conf gives the node, or slurmd
            # registers fewer and slurmctld drains the node.
            for node in hostlist.expand(node_line["NodeName"]):
                limits = slurmd(render_pod(config, facts_of(node_line, node), job_id=7).manifest)["resources"]["limits"]
                assert limits.get(f"nvidia.com/mig-{gres_type}") == str(count), (node, limits)
            continue
        first, last = map(int, re.search(r"\[(\d+)-(\d+)\]", conf["File"]).groups())
        assert (conf["Name"], conf["Type"], last - first + 1) == (name, gres_type, count)
        assert conf["File"].startswith("/dev/slurm-gpu")  # the names the entrypoint links


def test_mig_example_asks_for_the_slice_named_by_the_gres_type():
    pod, _, _ = pod_of("mig-inference")
    limits = slurmd(pod)["resources"]["limits"]
    assert limits["nvidia.com/mig-1g.10gb"] == "1"
    assert "nvidia.com/gpu" not in limits
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/mig.config": "all-1g.10gb"}
    spread = pod["spec"]["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"]["slurm-k8s-bridge/nodeset"] == "mig"


def test_spot_example_runs_only_on_spot_capacity_and_powers_the_node_down_on_reclaim():
    pod, _, _ = pod_of("spot-batch")
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"karpenter.sh/capacity-type": "spot"}
    assert spec["priorityClassName"] == "slurm-spot"
    assert spec["terminationGracePeriodSeconds"] < 30
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    command = slurmd(pod)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["/bin/sh", "-c"] and "State=POWER_DOWN_FORCE" in command[2]


@pytest.mark.parametrize("example", NAMES)
def test_headless_service_selects_the_example_pods_under_their_subdomain(example):
    service = yaml.safe_load((EXAMPLES / "slurmd-service.yaml").read_text())
    pod, _, _ = pod_of(example)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["subdomain"] == service["metadata"]["name"]
    assert pod["metadata"]["namespace"] == service["metadata"]["namespace"]
    port = service["spec"]["ports"][0]
    assert {"name": port["targetPort"], "containerPort": port["port"], "protocol": "TCP"} in slurmd(pod)["ports"]


@pytest.mark.parametrize("version", validate.SUPPORTED)
def test_headless_service_is_a_valid_kubernetes_object(version):
    service = yaml.safe_load((EXAMPLES / "slurmd-service.yaml").read_text())
    assert validate.schema_errors(service, version) == []
