"""Pod names for any Slurm node name: valid, unique, stable."""

import os
import re
import subprocess
import sys

import pytest

from bridge import naming

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_plain_node_name_is_kept_readable():
    assert naming.pod_name("linux", "elastic1") == "linux-elastic1"
    assert naming.hostname("elastic1") == "elastic1"


@pytest.mark.parametrize("node", ["Elastic_1", "node.a", "UPPER", "x" * 300, "a_b.c-D", "___", "-a-"])
def test_any_slurm_name_gives_a_valid_dns_label(node):
    for name in (naming.pod_name("linux", node), naming.hostname(node)):
        assert DNS_LABEL.match(name), name
        assert len(name) <= 63


def test_names_that_differ_only_by_case_or_punctuation_get_different_pods():
    names = {naming.pod_name("linux", n) for n in ["node-1", "Node-1", "node_1", "node.1", "NODE_1"]}
    assert len(names) == 5


def test_names_are_the_same_in_every_process_so_suspend_finds_the_pod_resume_made():
    # Each hook is a process of its own, with its own hash seed.
    code = "from bridge import naming; print(naming.pod_name('linux', 'Gpu_07'))"
    names = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                            capture_output=True, text=True, check=True).stdout.strip() for seed in ("1", "2")}
    assert names == {naming.pod_name("linux", "Gpu_07")}


def test_long_names_that_share_a_prefix_stay_unique():
    a, b = "n" * 200 + "a", "n" * 200 + "b"
    assert naming.pod_name("linux", a) != naming.pod_name("linux", b)


def test_is_ours_needs_labels_and_the_exact_node_annotation():
    pod = {"metadata": {"labels": naming.owner_labels("linux"),
                        "annotations": {naming.NODE_ANNOTATION: "elastic1"}}}
    assert naming.is_ours(pod, cluster="linux", node="elastic1")
    assert not naming.is_ours(pod, cluster="linux", node="elastic2")
    assert not naming.is_ours(pod, cluster="other", node="elastic1")
    assert not naming.is_ours({"metadata": {"labels": naming.owner_labels("linux")}}, cluster="linux")
    assert not naming.is_ours({"metadata": {"name": "linux-elastic1"}}, cluster="linux")


def test_node_selectors_name_each_node_once_in_batches_a_url_can_carry():
    nodes = [f"Node_{i}" for i in range(250)] + ["Node_0"]
    selectors = naming.node_selectors("linux", nodes)
    assert [len(s[naming.NODE_LABEL]) for s in selectors] == [100, 100, 50]
    named = [v for s in selectors for v in s[naming.NODE_LABEL]]
    assert sorted(named) == sorted(naming.dns_label(n) for n in set(nodes))
    assert all(s[naming.MANAGED_BY] == "slurm-k8s-bridge" and s[naming.CLUSTER_LABEL] == "linux" for s in selectors)


class Lister:
    def __init__(self, pods):
        self.pods, self.selectors = pods, []

    def list_pods(self, labels):
        self.selectors.append(labels)
        return [p for p in self.pods if all(
            p["metadata"]["labels"].get(k) in (v if isinstance(v, list) else [v]) for k, v in labels.items())]


def _pod(node):
    return {"metadata": {"name": naming.pod_name("linux", node), "annotations": {naming.NODE_ANNOTATION: node},
                         "labels": {**naming.owner_labels("linux"), naming.NODE_LABEL: naming.dns_label(node)}}}


def test_pods_of_few_nodes_are_listed_by_node_label():
    kube = Lister([_pod(f"n{i}") for i in range(1000)])
    found = naming.pods_of(kube, cluster="linux", nodes=[f"n{i}" for i in range(250)])
    assert sorted(found) == sorted(f"n{i}" for i in range(250))
    assert len(kube.selectors) == 3 and all(naming.NODE_LABEL in s for s in kube.selectors)


def test_pods_of_many_nodes_take_one_listing_of_all_the_bridges_pods():
    kube = Lister([_pod(f"n{i}") for i in range(1000)])
    found = naming.pods_of(kube, cluster="linux", nodes=[f"n{i}" for i in range(301)])
    assert len(found) == 301 and kube.selectors == [naming.owner_labels("linux")]
