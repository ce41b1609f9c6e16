"""What differs between the Slurm releases the project tests on, in one table.

    release("24.11.5").power_up("elastic3")    # ["scontrol", "power", "up", "elastic3"]
    power_saving_settings("26.05")             # slurm.conf.power-saving as 26.05 accepts it

Each release runs from the Debian release that packages it (testenv/docker.py builds the
images). The facts come from Slurm's release notes and were checked against the real daemons
(tests/docker/test_versions.py). What a version offers is asked of the bridge's own table,
bridge/slurmversion.py; this module adds only what the test environment needs on top (the Debian
release that packages each version, the admin's commands, the slurm.conf it renders).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.slurmversion import SlurmVersion
from testenv.slurm.config import SNIPPET, read_settings


@dataclass(frozen=True)
class SlurmRelease:
    """One Slurm release (major.minor) and what the test environment must do differently for it."""

    name: str
    """e.g. "24.11"."""
    debian: str | None = None
    """The Debian release whose packages the tests run it from; None: not tested here."""

    @property
    def number(self) -> tuple[int, int]:
        major, minor = self.name.split(".")
        return int(major), int(minor)

    def at_least(self, name: str) -> bool:
        return self.number >= release_number(name)

    def supports(self, capability: str) -> bool:
        """What bridge/slurmversion.py says this release offers."""
        return SlurmVersion(*self.number).supports(capability)

    @property
    def removed_parameters(self) -> frozenset[str]:
        """SlurmctldParameters items this release no longer accepts: cloud_reg_addrs became the
        default in 23.11 and went away (a 23.11+ slurmctld logs an error for it)."""
        return frozenset() if self.supports("cloud_reg_addrs") else frozenset({"cloud_reg_addrs"})

    def power_up(self, nodes: str) -> list[str]:
        """An admin's manual power up: `scontrol power up` from 24.05, a node update before."""
        if self.supports("power_commands"):
            return ["scontrol", "power", "up", nodes]
        return ["scontrol", "update", f"NodeName={nodes}", "State=POWER_UP"]

    def power_down(self, nodes: str) -> list[str]:
        """An admin's manual power down (SuspendProgram runs, the node goes idle~)."""
        if self.supports("power_commands"):
            return ["scontrol", "power", "down", nodes]
        return ["scontrol", "update", f"NodeName={nodes}", "State=POWER_DOWN"]

    @property
    def node_json(self) -> bool:
        """`scontrol show node --json` exists (23.02+); 22.05 has only `sinfo --json`."""
        return self.supports("json_node_read")


RELEASES = {r.name: r for r in (SlurmRelease("22.05", "bookworm"), SlurmRelease("24.11", "trixie"),
                                 SlurmRelease("26.05", "sid"))}


def release_number(version: str) -> tuple[int, int]:
    """"24.11.5" or "24.11" -> (24, 11)."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def release(version: str) -> SlurmRelease:
    """The release of a version such as 24.11.5 (one not tested here has no Debian release)."""
    name = "%d.%02d" % release_number(version)
    return RELEASES.get(name) or SlurmRelease(name)


def power_saving_settings(version: str, snippet: Path = SNIPPET) -> dict[str, str]:
    """The site snippet's settings as this release accepts them (parameters it removed dropped)."""
    settings = read_settings(snippet)
    removed = release(version).removed_parameters
    if removed and "SlurmctldParameters" in settings:
        kept = [p for p in settings["SlurmctldParameters"].split(",") if p.split("=", 1)[0] not in removed]
        settings["SlurmctldParameters"] = ",".join(kept)
    return settings
