"""The runner's device bookkeeping (testenv/runner/devices.py): which devices a container gets."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube.resources.core_v1 import Pod

from testenv.runner.devices import AdmissionError, NodeDevices
from testenv.runner.runtime import Device


def pod(uid: str, *containers: dict[str, str], init: tuple[dict[str, str], ...] = ()) -> Pod:
    def container(name: str, limits: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {"name": name, "image": "x", "resources": {"limits": limits}, **extra}

    return Pod.from_dict({
        "metadata": {"name": uid, "namespace": "default", "uid": uid},
        "spec": {"containers": [container(f"c{i}", limits) for i, limits in enumerate(containers)],
                 "initContainers": [container(f"i{i}", limits) for i, limits in enumerate(init)]},
    })


def test_devices_an_init_container_had_go_to_the_container_after_it() -> None:
    node = NodeDevices("n", {"nvidia.com/gpu": "4"})
    granted = node.admit(pod("a", {"nvidia.com/gpu": "2"}, init=({"nvidia.com/gpu": "1"},)))
    assert granted.by_container == {"i0": {"nvidia.com/gpu": [0]}, "c0": {"nvidia.com/gpu": [0, 1]}}
    assert node.admit(pod("b", {"nvidia.com/gpu": "2"})).by_container["c0"] == {"nvidia.com/gpu": [2, 3]}
    with pytest.raises(AdmissionError, match="Requested: 1, Available: 0"):
        node.admit(pod("c", {"nvidia.com/gpu": "1"}))
    node.release("a")
    assert node.admit(pod("c", {"nvidia.com/gpu": "1"})).by_container["c0"] == {"nvidia.com/gpu": [0]}


def test_a_resource_the_node_lacks_is_refused_like_the_kubelets_admission() -> None:
    with pytest.raises(AdmissionError) as refused:
        NodeDevices("n", {"cpu": "4"}).admit(pod("a", {"amd.com/gpu": "1"}))
    assert refused.value.reason == "OutOfamd.com/gpu"


def test_what_a_container_sees_of_each_kind() -> None:
    labels = {"nvidia.com/gpu.replicas": "2", "nvidia.com/gpu.count": "2"}
    node = NodeDevices("n", {"nvidia.com/gpu.shared": "4", "nvidia.com/mig-1g.10gb": "14", "amd.com/gpu": "2",
                             "nvidia.com/rdma_rail0": "1"}, labels)
    shared = node.grant(node.admit(pod("s", {"nvidia.com/gpu.shared": "1"})), "c0")
    other = node.grant(node.admit(pod("t", {"nvidia.com/gpu.shared": "1"})), "c0")
    assert shared.devices[0] == other.devices[0] == Device("/dev/nvidia0", 195, 0)  # replicas of one GPU
    assert shared.env == other.env
    mig = node.grant(node.admit(pod("m", {"nvidia.com/mig-1g.10gb": "1"})), "c0")
    assert Device("/dev/nvidia-caps/nvidia-cap1", 237, 1) in mig.devices
    assert dict(mig.env)["NVIDIA_VISIBLE_DEVICES"].startswith("MIG-")
    amd = node.grant(node.admit(pod("a", {"amd.com/gpu": "1", "nvidia.com/rdma_rail0": "1"})), "c0")
    assert amd.devices == (Device("/dev/dri/renderD128", 226, 128), Device("/dev/kfd", 238, 0)) and amd.env == ()
