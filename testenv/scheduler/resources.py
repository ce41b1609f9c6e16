"""Resource amounts of pods and nodes, as kube-scheduler's NodeResourcesFit counts them.

An amount is an int: millicores for cpu, bytes for memory and hugepages, a count for everything
else (pods, nvidia.com/gpu, intel.com/sriov, ...). Extended resources cannot be overcommitted and
are never fractional, so ints are exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import ceil

from lightkube.models.core_v1 import Container, PodSpec

from testenv.kubeapi.quantity import parse

Resources = dict[str, int]

CPU, MEMORY, PODS = "cpu", "memory", "pods"

# What the scheduler assumes for scoring a container that requests nothing (non-zero requests).
DEFAULT_CPU_REQUEST = 100  # millicores
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024


def amount(resource: str, quantity: str | float) -> int:
    """The integer amount of a quantity: millicores for cpu, base units (rounded up) otherwise."""
    value = parse(quantity).value
    return ceil(value * 1000) if resource == CPU else ceil(value)


def amounts(quantities: Mapping[str, str] | None) -> Resources:
    return {name: amount(name, q) for name, q in (quantities or {}).items()}


def add(total: Resources, more: Mapping[str, int]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0) + value


def _maximum(a: Mapping[str, int], b: Mapping[str, int]) -> Resources:
    return {name: max(a.get(name, 0), b.get(name, 0)) for name in set(a) | set(b)}


def container_requests(container: Container) -> Resources:
    """Requests, taking a limit where the request is missing (what API defaulting does)."""
    resources = container.resources
    if resources is None:
        return {}
    requested = amounts(resources.limits)
    requested.update(amounts(resources.requests))
    return requested


def pod_requests(spec: PodSpec) -> Resources:
    """Effective request: max(sum of containers (+ sidecars), largest init step), plus overhead."""
    total: Resources = {}
    for container in spec.containers:
        add(total, container_requests(container))
    sidecars: Resources = {}
    init_peak: Resources = {}
    for init in spec.initContainers or []:
        requested = container_requests(init)
        if init.restartPolicy == "Always":  # a sidecar keeps running next to the containers
            add(total, requested)
            add(sidecars, requested)
            step = dict(sidecars)
        else:  # runs alone, next to the sidecars started before it
            step = dict(requested)
            add(step, sidecars)
        init_peak = _maximum(init_peak, step)
    total = _maximum(total, init_peak)
    add(total, amounts(spec.overhead))
    return {name: value for name, value in total.items() if value > 0}


def pod_nonzero_requests(spec: PodSpec) -> tuple[int, int]:
    """(cpu, memory) for scoring, counting a default for containers that request none."""
    cpu = memory = 0
    for container in spec.containers:
        requested = container_requests(container)
        cpu += requested.get(CPU) or DEFAULT_CPU_REQUEST
        memory += requested.get(MEMORY) or DEFAULT_MEMORY_REQUEST
    return cpu, memory


def insufficient(requested: Mapping[str, int], free: Mapping[str, int]) -> list[str]:
    """The names of requested resources that do not fit in `free`, sorted."""
    return sorted(name for name, value in requested.items() if value > free.get(name, 0))
