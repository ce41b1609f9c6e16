"""What differs between the Slurm versions the bridge supports, in one table.

The bridge learns the version it talks to from what it reads anyway: every JSON answer of
``sinfo --json`` / ``scontrol --json`` carries it in ``meta`` (22.05: ``meta.Slurm``; 23.02 and
later: ``meta.slurm``, with the numbers sometimes as strings). No extra process, no config.

Use::

    version = SlurmVersion.from_meta(data["meta"])      # or SlurmVersion.parse("24.11.5")
    if version.supports("power_commands"): ...
    str(version)                                       # "24.11.5"

Each capability is a range of versions in :data:`CAPABILITIES`: the first version that has
it and the first that no longer has it. Code asks by name, so what changes with a new Slurm
release is one line here, never an ``if version >= ...`` elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Release = tuple[int, int]
"""(major, minor): Slurm's releases are ``YY.MM`` (22.05, 23.02, 23.11, 24.05, ...)."""


@dataclass(frozen=True)
class Capability:
    since: Release | None
    """First release that has it; None: every supported release."""
    until: Release | None
    """First release that no longer has it; None: still there."""
    what: str


CAPABILITIES: dict[str, Capability] = {
    "json_node_read": Capability((23, 2), None,
        "scontrol --json show node NODES; before, only sinfo --json, whose node filter is ignored"),
    "state_list": Capability((23, 2), None,
        "node state is one list [\"IDLE\", \"CLOUD\", ...]; before, state + state_flags"),
    "resume_file_v2": Capability((23, 2), None,
        "SLURM_RESUME_FILE has all_nodes_resume and jobs[].nodes_resume/nodes_alloc; before, all_nodes and jobs[].nodes"),
    "not_responding_after_resume_timeout": Capability(None, (23, 2),
        "a node past ResumeTimeout is also NOT_RESPONDING"),
    "cloud_reg_addrs": Capability(None, (23, 11),
        "SlurmctldParameters=cloud_reg_addrs (from 23.11 its behaviour is the default and the word is refused)"),
    "power_commands": Capability((24, 5), None, "scontrol power up|down [asap|force] NODES"),
    "warm_pool": Capability((24, 5), None, "SuspendExcNodes=<nodes>:N keeps N nodes powered up"),
    "power_reason": Capability((25, 5), None, "scontrol power down ... Reason="),
    "requeue_on_resume_failure": Capability((25, 5), None, "SchedulerParameters=requeue_on_resume_failure"),
    "resume_timeout_infinite": Capability((25, 5), None, "ResumeTimeout=INFINITE"),
    "openmetrics": Capability((25, 11), None, "MetricsType=metrics/openmetrics on SlurmctldPort"),
}


@dataclass(frozen=True, order=True)
class SlurmVersion:
    major: int
    minor: int
    micro: int = 0

    @classmethod
    def parse(cls, text: str) -> SlurmVersion:
        """``"22.05.8"``, ``"24.11"``, ``"slurm 24.11.5"``, ``"23.02.0-0rc1"``.

        Raises:
            ValueError: no version in ``text``.
        """
        word = text.split()[-1] if text.split() else ""
        parts = word.split("-", 1)[0].split(".")
        try:
            numbers = [int(p) for p in parts[:3]]
        except ValueError:
            raise ValueError(f"not a Slurm version: {text!r}") from None
        if len(numbers) < 2:
            raise ValueError(f"not a Slurm version: {text!r}")
        return cls(*numbers)

    @classmethod
    def from_meta(cls, meta: Any) -> SlurmVersion | None:
        """The version in a JSON answer's ``meta``; None if it carries none."""
        if not isinstance(meta, dict):
            return None
        slurm = meta.get("slurm") or meta.get("Slurm") or {}
        version = slurm.get("version") if isinstance(slurm, dict) else None
        try:
            if isinstance(version, dict):
                return cls(int(version["major"]), int(version["minor"]), int(version.get("micro") or 0))
            return cls.parse(str(slurm.get("release"))) if isinstance(slurm, dict) and slurm.get("release") else None
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def release(self) -> Release:
        return (self.major, self.minor)

    def supports(self, capability: str) -> bool:
        """Whether this version has ``capability`` (a key of :data:`CAPABILITIES`).

        Raises:
            KeyError: no such capability (a typo must not read as "unsupported").
        """
        entry = CAPABILITIES[capability]
        return ((entry.since is None or self.release >= entry.since)
                and (entry.until is None or self.release < entry.until))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor:02d}.{self.micro}"
