"""``GET pods/{name}/log``: kube-apiserver proxies it to the kubelet of the pod's node.

As pkg/registry/core/pod/strategy.go LogLocation does: the pod must exist (404) and name one of
its containers (400); a pod not yet bound has no log (an empty body); otherwise the request goes
to ``http://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/
<container>`` (testenv/runner/logs.py serves it) and the kubelet's answer comes back: its text
as ``text/plain``, or a refusal as a Status with the kubelet's words as the message
(apiserver's genericHttpResponseChecker). Only ``container`` and ``tailLines`` are passed on.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from . import errors as e
from .responses import text_response
from .rest import Rest
from .resources import ResourceType

_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}


async def pod_log(rest: Rest, pods: ResourceType, namespace: str, name: str, query: Any) -> web.Response:
    pod = rest.get(pods, namespace, name)
    container = _container(pod, query.get("container", ""))
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        return text_response("")
    nodes = rest.registry.lookup("", "v1", "nodes")
    assert nodes is not None
    url = _kubelet(rest.get(nodes, "", node_name)) + f"/containerLogs/{namespace}/{name}/{container}"
    params = {"tailLines": query["tailLines"]} if query.get("tailLines") else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url, params=params) as answer:
                text = await answer.text(errors="replace")
                status = answer.status
    except (aiohttp.ClientError, TimeoutError) as err:
        raise e.internal(f'Get "{url}": {err}') from err
    if status >= 300:
        details = {"name": name, "kind": "pods", "causes": [{"reason": "UnexpectedServerResponse", "message": text}]}
        raise e.ApiError(e.status_body(status, _REASONS.get(status, "InternalError"), text, details))
    return text_response(text)


def _container(pod: Any, container: str) -> str:
    spec = pod.get("spec") or {}
    names = [c["name"] for key in ("initContainers", "containers") for c in spec.get(key) or []]
    regular = [c["name"] for c in spec.get("containers") or []]
    name = pod["metadata"]["name"]
    if not container:
        if len(regular) == 1:
            return regular[0]
        raise e.bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")
    if container not in names:
        raise e.bad_request(f"container {container} is not valid for pod {name}")
    return container


def _kubelet(node: Any) -> str:
    status = node.get("status") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("Hostname") or node["metadata"]["name"]
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", 0)
    return f"http://{host}:{port}"
