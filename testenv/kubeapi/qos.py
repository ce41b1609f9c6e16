"""Pod QoS class, computed as pkg/apis/core/helper/qos does."""

from __future__ import annotations

from fractions import Fraction

from . import quantity
from .jsonobj import JsonObject

_COMPUTE = ("cpu", "memory")


def _positive(resources: JsonObject | None) -> dict[str, Fraction]:
    out = {}
    for name, text in (resources or {}).items():
        if name in _COMPUTE:
            value = quantity.parse(text).value
            if value > 0:
                out[name] = value
    return out


def pod_qos(spec: JsonObject) -> str:
    """Guaranteed, Burstable or BestEffort; expects requests already defaulted from limits."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        resources = container.get("resources") or {}
        for name, value in _positive(resources.get("requests")).items():
            requests[name] = requests.get(name, Fraction(0)) + value
        container_limits = _positive(resources.get("limits"))
        for name, value in container_limits.items():
            limits[name] = limits.get(name, Fraction(0)) + value
        if set(container_limits) != set(_COMPUTE):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(requests.get(n) == limits.get(n) for n in _COMPUTE) and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"
