"""Version skew between slurmctld and the slurmd a nodeset's image carries.

Slurm accepts slurmd up to two major releases older than slurmctld, never newer. The bridge's
images carry the Slurm version in their tag (``slurm-k8s-bridge/slurmd:24.11.5``), so a nodeset
whose image cannot register is known before a job waits on it:

    problem = image_skew("24.11.5", "registry.example.org/slurm-k8s-bridge/slurmd:26.05.5")
    # "slurmd 26.05 of image ... is newer than slurmctld 24.11: slurmd may not be newer"

Stdlib only, no I/O: ``render --check`` (or config load) calls it with the version
``scontrol --version`` printed.
"""

from __future__ import annotations

import re

OLDEST_ACCEPTED = 2
"""Releases slurmd may be behind slurmctld."""
_BEFORE_2302 = ((17, 2), (17, 11), (18, 8), (19, 5), (20, 2), (20, 11), (21, 8), (22, 5))
_VERSION_TAG = re.compile(r"^(\d{2})\.(\d{2})(?:\.\d+)?(?:[-+_.].*)?$")


def release_index(release: tuple[int, int]) -> int:
    """Position of a major release in Slurm's sequence: 22.05, 23.02, 23.11, then YY.05 and YY.11."""
    if release in _BEFORE_2302:
        return _BEFORE_2302.index(release)
    base = len(_BEFORE_2302)
    if release == (23, 2):
        return base
    year, month = release
    if year < 23 or month not in (5, 11) or release == (23, 5):
        raise ValueError(f"{year}.{month:02d} is not a Slurm release")
    return base + 1 + (year - 23) * 2 - (1 if month == 5 else 0)


def tag_release(image: str) -> tuple[int, int] | None:
    """The Slurm release an image's tag names (``...:24.11.5`` → (24, 11)); None for any other tag."""
    reference = image.split("@", 1)[0]
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return None
    match = _VERSION_TAG.match(tag)
    return (int(match[1]), int(match[2])) if match else None


def image_skew(controller: str, image: str) -> str | None:
    """Why slurmd of ``image`` cannot register with slurmctld ``controller`` (e.g. "24.11.5"); None
    when it can, or when the tag does not say which Slurm the image has."""
    slurmd = tag_release(image)
    if slurmd is None:
        return None
    ctld = tuple(int(part) for part in controller.split(".")[:2])
    try:
        behind = release_index(ctld) - release_index(slurmd)  # type: ignore[arg-type]
    except ValueError:
        return None
    shown = f"slurmd {slurmd[0]}.{slurmd[1]:02d} of image {image}"
    if behind < 0:
        return f"{shown} is newer than slurmctld {controller}: slurmd may not be newer than slurmctld"
    if behind > OLDEST_ACCEPTED:
        return (f"{shown} is {behind} releases older than slurmctld {controller}: "
                f"slurmd may be at most {OLDEST_ACCEPTED} releases older")
    return None
