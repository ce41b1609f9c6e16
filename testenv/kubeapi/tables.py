"""Server-side printing: `Table` answers for clients that ask for them (kubectl get).

kubectl asks with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`; the
columns here are the real server's for pods, nodes and namespaces, a CRD's
additionalPrinterColumns for custom resources, and Name/Age otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from .clock import now
from .jsonobj import JsonObject
from .resources import ResourceType

Cell = Callable[[JsonObject], Any]
TABLE_MEDIA = "as=Table"


def wants_table(accept: str) -> bool:
    """True when the preferred media type is a meta.k8s.io/v1 Table."""
    first = accept.split(",")[0]
    return TABLE_MEDIA in first and "g=meta.k8s.io" in first


def human_age(timestamp: str | None) -> str:
    """Age as kubectl prints it (duration.HumanDuration, shortened)."""
    if not timestamp:
        return "<unknown>"
    seconds = int((now() - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds())
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _age(obj: JsonObject) -> str:
    return human_age(obj["metadata"].get("creationTimestamp"))


def _name(obj: JsonObject) -> str:
    return str(obj["metadata"]["name"])


def _pod_ready(pod: JsonObject) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{len((pod.get('spec') or {}).get('containers') or [])}"


def _pod_status(pod: JsonObject) -> str:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        reason = (state.get("waiting") or state.get("terminated") or {}).get("reason")
        if reason:
            return str(reason)
    return str(status.get("reason") or status.get("phase") or "Unknown")


def _pod_restarts(pod: JsonObject) -> int:
    return sum(int(s.get("restartCount", 0)) for s in (pod.get("status") or {}).get("containerStatuses") or [])


def _node_status(node: JsonObject) -> str:
    ready = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}.get("Ready")
    text = {"True": "Ready", "False": "NotReady"}.get(ready or "", "Unknown")
    return text + (",SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable") else "")


def _node_roles(node: JsonObject) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix) :] for k in node["metadata"].get("labels") or {} if k.startswith(prefix))
    return ",".join(roles) or "<none>"


def _field(*path: str, default: Any = "<none>") -> Cell:
    def get(obj: JsonObject) -> Any:
        value: Any = obj
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return default if value in (None, "") else value

    return get


Column = tuple[str, str, int, Cell]  # name, type, priority (1 = only with -o wide), cell

NAME: Column = ("Name", "string", 0, _name)
AGE: Column = ("Age", "string", 0, _age)
COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        NAME,
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "string", 0, _pod_restarts),
        AGE,
        ("IP", "string", 1, _field("status", "podIP")),
        ("Node", "string", 1, _field("spec", "nodeName")),
        ("Nominated Node", "string", 1, _field("status", "nominatedNodeName")),
    ],
    ("", "nodes"): [
        NAME,
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, _node_roles),
        AGE,
        ("Version", "string", 0, _field("status", "nodeInfo", "kubeletVersion", default="")),
    ],
    ("", "namespaces"): [NAME, ("Status", "string", 0, _field("status", "phase", default="")), AGE],
}


def _printer_columns(rt: ResourceType) -> list[Column]:
    columns: list[Column] = [NAME]
    for spec in getattr(rt.strategy, "printer_columns", ()):
        path = spec["jsonPath"].lstrip(".").split(".")
        cell = _age_at(path) if spec.get("type") == "date" else _field(*path)
        columns.append((spec["name"], spec.get("type", "string"), int(spec.get("priority", 0)), cell))
    if len(columns) == 1:
        columns.append(AGE)
    return columns


def _age_at(path: list[str]) -> Cell:
    get = _field(*path, default=None)
    return lambda obj: human_age(get(obj))


def table(rt: ResourceType, objects: list[JsonObject], list_meta: JsonObject, include: str) -> JsonObject:
    """A Table of `objects`; `include` is the includeObject option (None, Metadata or Object)."""
    columns = COLUMNS.get((rt.group, rt.plural)) or _printer_columns(rt)
    rows = []
    for obj in objects:
        row: JsonObject = {"cells": [cell(obj) for _, _, _, cell in columns]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            metadata = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
            row["object"] = metadata
        rows.append(row)
    definitions = [
        {"name": name, "type": kind, "format": "name" if name == "Name" else "", "description": "", "priority": prio}
        for name, kind, prio, _ in columns
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }
