"""Group-qualified names the server uses in messages ("pods", "podgroups.scheduling.volcano.sh")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GroupResource:
    group: str
    resource: str

    def __str__(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


@dataclass(frozen=True)
class GroupKind:
    group: str
    kind: str

    def __str__(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind
