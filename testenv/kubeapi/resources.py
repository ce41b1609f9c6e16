"""The registry of resource types the server serves.

A resource type is one entry: where it lives in the URL space
(group/version/plural), what discovery says about it, and the `Strategy`
that holds its per-kind behaviour. Built-in kinds are listed in
`builtin.py`; CustomResourceDefinitions add entries at run time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .gvk import GroupKind, GroupResource

if TYPE_CHECKING:
    from .strategy import Strategy

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Subresource:
    name: str  # "status", "binding", "log"
    kind: str  # kind in discovery ("Pod" for status, "Binding" for binding)
    verbs: tuple[str, ...]


STATUS = Subresource("status", "", ("get", "patch", "update"))


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    strategy: Strategy
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[Subresource, ...] = ()
    # Objects of several API versions (or groups, for events) may share one
    # storage; this names it.
    storage: str = ""
    builtin: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def group_resource(self) -> GroupResource:
        return GroupResource(self.group, self.plural)

    @property
    def group_kind(self) -> GroupKind:
        return GroupKind(self.group, self.kind)

    @property
    def storage_key(self) -> str:
        return self.storage or f"{self.group}/{self.plural}"

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None

    @property
    def has_status(self) -> bool:
        return self.subresource("status") is not None


@dataclass
class Registry:
    """Resource types by (group, version, plural); groups keep registration order for discovery."""

    _types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    _preferred: dict[str, str] = field(default_factory=dict)

    def add(self, rt: ResourceType, preferred: bool = False) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt
        if preferred or rt.group not in self._preferred:
            self._preferred[rt.group] = rt.version

    def remove_group_resource(self, group: str, plural: str) -> None:
        for key in [k for k in self._types if k[0] == group and k[2] == plural]:
            del self._types[key]
        if not any(k[0] == group for k in self._types):
            self._preferred.pop(group, None)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def all(self) -> Iterable[ResourceType]:
        return list(self._types.values())

    def versions(self, group: str) -> list[str]:
        seen: dict[str, None] = {}
        preferred = self._preferred.get(group)
        if preferred:
            seen[preferred] = None
        for g, v, _ in self._types:
            if g == group:
                seen.setdefault(v, None)
        return list(seen)

    def groups(self) -> list[str]:
        seen: dict[str, None] = {}
        for g, _, _ in self._types:
            seen.setdefault(g, None)
        return [g for g in seen if g]

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for (g, v, _), rt in self._types.items() if g == group and v == version]

    def by_storage(self) -> dict[str, ResourceType]:
        """One type per storage (the first registered, i.e. the preferred version)."""
        seen: dict[str, ResourceType] = {}
        for rt in self._types.values():
            seen.setdefault(rt.storage_key, rt)
        return seen

    def namespaced_storages(self) -> list[ResourceType]:
        """One type per namespaced storage, for emptying a namespace."""
        seen: dict[str, ResourceType] = {}
        for rt in self._types.values():
            if rt.namespaced:
                seen.setdefault(rt.storage_key, rt)
        return list(seen.values())
