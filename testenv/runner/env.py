"""A container's environment as the kubelet builds it: envFrom, then env, with $(VAR) expansion.

Values come from literals, the downward API (fieldRef, resourceFieldRef), Secrets and ConfigMaps.
A missing Secret/ConfigMap/key that is not optional is a CreateContainerConfigError, which the
kubelet retries: `EnvError` carries the kubelet's message for it.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from math import ceil
from typing import Any

from lightkube.models.core_v1 import Container, EnvVar
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret

from testenv.kubeapi.quantity import parse

from .kube import API_ERRORS, Api, status_code

_VALID_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class EnvError(Exception):
    """CreateContainerConfigError: the environment cannot be built (yet)."""


@dataclass(frozen=True)
class PodAddresses:
    host_ip: str
    pod_ip: str


def expand(text: str, variables: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, the rest stays as is."""
    out = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 >= len(text):
            out.append(text[i])
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(":
            end = text.find(")", i + 2)
            name = text[i + 2 : end] if end != -1 else None
            if name is not None and name in variables:
                out.append(variables[name])
                i = end + 1
            elif name is not None:
                out.append(text[i : end + 1])
                i = end + 1
            else:
                out.append(text[i:])
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def field_value(pod: Pod, path: str, addresses: PodAddresses) -> str:
    """The downward API's fieldRef values."""
    meta = pod.metadata
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        source = meta.labels if match.group(1) == "labels" else meta.annotations
        return (source or {}).get(match.group(2), "")
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.nodeName,
        "spec.serviceAccountName": pod.spec.serviceAccountName,
        "status.hostIP": addresses.host_ip,
        "status.hostIPs": addresses.host_ip,
        "status.podIP": addresses.pod_ip,
        "status.podIPs": addresses.pod_ip,
    }
    if path in ("metadata.labels", "metadata.annotations"):
        source = (meta.labels if path == "metadata.labels" else meta.annotations) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(source.items()))
    if path not in simple:
        raise EnvError(f"unsupported fieldRef {path!r}")
    return simple[path] or ""


def resource_value(container: Container, resource: str, divisor: str | None, node_allocatable: dict[str, str]) -> str:
    """resourceFieldRef: a request or limit (a limit defaults to the node's allocatable)."""
    kind, _, name = resource.partition(".")
    resources = container.resources
    chosen = (getattr(resources, kind, None) or {}) if resources else {}
    text = chosen.get(name) or (node_allocatable.get(name) if kind == "limits" else None) or "0"
    value = parse(text).value / parse(divisor or "1").value
    return str(ceil(value))


class EnvResolver:
    """Builds environments for one pod, reading each Secret/ConfigMap once per call of `build`."""

    def __init__(self, api: Api, pod: Pod, addresses: PodAddresses, node_allocatable: dict[str, str]) -> None:
        self._api = api
        self._pod = pod
        self._addresses = addresses
        self._allocatable = node_allocatable
        self._cache: dict[tuple[str, str], dict[str, str] | None] = {}

    async def build(self, container: Container) -> list[tuple[str, str]]:
        env: dict[str, str] = {}
        for source in container.envFrom or []:
            env.update(await self._from_source(source))
        for var in container.env or []:
            env[var.name] = await self._value(container, var, env)
        return list(env.items())

    async def _from_source(self, source: Any) -> dict[str, str]:
        ref = source.configMapRef or source.secretRef
        kind = "ConfigMap" if source.configMapRef else "Secret"
        data = await self._data(kind, ref.name)
        if data is None:
            if ref.optional:
                return {}
            raise EnvError(f'{kind.lower()} "{ref.name}" not found')
        prefix = source.prefix or ""
        return {prefix + k: v for k, v in data.items() if _VALID_NAME.match(prefix + k)}

    async def _value(self, container: Container, var: EnvVar, env: dict[str, str]) -> str:
        if var.valueFrom is None:
            return expand(var.value or "", env)
        source = var.valueFrom
        if source.fieldRef is not None:
            return field_value(self._pod, source.fieldRef.fieldPath, self._addresses)
        if source.resourceFieldRef is not None:
            ref = source.resourceFieldRef
            target = _container_named(self._pod, ref.containerName) if ref.containerName else container
            divisor = str(ref.divisor) if ref.divisor is not None else None
            return resource_value(target, ref.resource, divisor, self._allocatable)
        key_ref = source.secretKeyRef or source.configMapKeyRef
        if key_ref is None:
            raise EnvError(f"unsupported valueFrom for {var.name}")
        kind = "Secret" if source.secretKeyRef else "ConfigMap"
        data = await self._data(kind, key_ref.name)
        if data is None or key_ref.key not in data:
            if key_ref.optional:
                return ""
            if data is None:
                raise EnvError(f'{kind.lower()} "{key_ref.name}" not found')
            raise EnvError(f"couldn't find key {key_ref.key} in {kind} {self._pod.metadata.namespace}/{key_ref.name}")
        return data[key_ref.key]

    async def _data(self, kind: str, name: str) -> dict[str, str] | None:
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = await read_data(self._api, kind, name, self._pod.metadata.namespace)
        return self._cache[key]


async def read_data(api: Api, kind: str, name: str, namespace: str) -> dict[str, str] | None:
    """A Secret's or ConfigMap's data as text (None if it does not exist)."""
    raw = await read_bytes(api, kind, name, namespace)
    return None if raw is None else {k: v.decode(errors="replace") for k, v in raw.items()}


async def read_bytes(api: Api, kind: str, name: str, namespace: str) -> dict[str, bytes] | None:
    """A Secret's or ConfigMap's data as bytes (None if it does not exist)."""
    resource = Secret if kind == "Secret" else ConfigMap
    try:
        obj = await api.client.get(resource, name, namespace=namespace)
    except API_ERRORS as e:
        if status_code(e) == 404:
            return None
        raise
    if isinstance(obj, Secret):
        return {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}
    data = {k: v.encode() for k, v in (obj.data or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.binaryData or {}).items()})
    return data


def _container_named(pod: Pod, name: str) -> Container:
    for container in [*pod.spec.containers, *(pod.spec.initContainers or [])]:
        if container.name == name:
            return container
    raise EnvError(f"resourceFieldRef names unknown container {name!r}")
