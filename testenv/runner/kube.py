"""The Kubernetes API as the scheduler and the pod runner use it: lightkube clients from one kubeconfig.

Everything goes through the public API so both programs work unchanged against a real API server.
Two requests go through a plain HTTP client built by lightkube's own connection code from the
same kubeconfig: a DELETE with a body (DeleteOptions with a uid precondition, what the kubelet
sends to remove a pod it has stopped), which lightkube cannot express, and the pods/binding POST,
whose answer (a Status) lightkube would try to decode as a Binding.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Union

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.config import client_adapter
from lightkube.resources.core_v1 import NodeStatus, PodStatus
from lightkube.types import PatchType

KubeconfigSource = Union[str, "os.PathLike[str]", KubeConfig]

#: Errors of one API call: the server said no (ApiError, a subclass) or the connection failed.
API_ERRORS = (httpx2.HTTPError, httpx2.StreamError)


def load_kubeconfig(source: KubeconfigSource) -> KubeConfig:
    if isinstance(source, KubeConfig):
        return source
    return KubeConfig.from_file(Path(source))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def timestamp(when: dt.datetime | None = None) -> str:
    """RFC 3339 in UTC with second precision, the form of metav1.Time."""
    return (when or now()).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_code(error: BaseException) -> int | None:
    if isinstance(error, ApiError):
        return error.status.code
    return None


class Api:
    """An async lightkube client plus the few requests lightkube cannot express."""

    def __init__(self, kubeconfig: KubeconfigSource, *, field_manager: str) -> None:
        config = load_kubeconfig(kubeconfig)
        self.client = AsyncClient(config=config, field_manager=field_manager)
        self._http = client_adapter.AsyncClient(config.get(), client_adapter.ConnectionParams())

    async def close(self) -> None:
        await self.client.close()
        await self._http.aclose()

    async def delete_pod_now(self, *, namespace: str, name: str, uid: str) -> bool:
        """Remove a stopped pod from the API, only if it is still the same pod (uid). False if gone."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        response = await self._http.request("DELETE", f"api/v1/namespaces/{namespace}/pods/{name}", json=body)
        if response.status_code in (404, 409):  # already gone, or another pod now has the name
            return False
        _raise_for_status(response)
        return True

    async def bind_pod(self, *, namespace: str, name: str, uid: str, node: str) -> None:
        """POST pods/binding. The API answers with a Status, which lightkube would decode as a Binding."""
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        response = await self._http.post(f"api/v1/namespaces/{namespace}/pods/{name}/binding", json=body)
        _raise_for_status(response)

    async def patch_pod_status(self, *, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self.client.patch(PodStatus, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE)

    async def patch_node_status(self, *, name: str, status: dict[str, Any]) -> None:
        await self.client.patch(NodeStatus, name, {"status": status}, patch_type=PatchType.MERGE)


def _raise_for_status(response: httpx2.Response) -> None:
    if not response.is_error:
        return
    if response.headers.get("Content-Type", "").startswith("application/json"):
        raise ApiError(request=response.request, response=response)
    response.raise_for_status()
