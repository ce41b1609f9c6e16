"""The process runtime's image store: a table from image reference to what the image would run.

An image is not a filesystem here (containers see the host's), so an "image" is only its config:
ENTRYPOINT, CMD, ENV and WORKDIR, pointing at programs on the host. IMAGES.yaml:

    images:
      busybox:                          # any form Docker accepts; matched after normalising
        cmd: [sh]
      example.org/slurm/slurmd:22.05:
        entrypoint: [/opt/slurmd/entrypoint.sh]
        cmd: []
        env: {SLURMD_OPTIONS: "-D"}
        workingDir: /

An image missing from the table does not exist: pulling it fails as a registry's NotFound would.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, expect_mapping, expect_str_list, expect_str_map
from .runtime import Image

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Available without an IMAGES.yaml (an IMAGES.yaml may redefine them).
BUILTIN_IMAGES: dict[str, dict[str, Any]] = {
    "busybox": {"cmd": ["sh"]},
    "debian:bookworm": {"cmd": ["bash"]},
    "debian:bookworm-slim": {"cmd": ["bash"]},
}


def normalise(reference: str) -> str:
    """Docker's normalisation: busybox -> docker.io/library/busybox:latest."""
    name, digest = (reference.split("@", 1) + [""])[:2]
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = name[colon + 1 :] if colon > slash else ""
    repository = name[:colon] if colon > slash else name
    first, _, rest = repository.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        repository = f"docker.io/{repository}"
    if repository.count("/") == 1 and repository.startswith("docker.io/"):
        repository = repository.replace("docker.io/", "docker.io/library/", 1)
    if digest:
        return f"{repository}{':' + tag if tag else ''}@{digest}"
    return f"{repository}:{tag or 'latest'}"


def repository_of(reference: str) -> str:
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


@dataclass(frozen=True)
class ImageTable:
    images: Mapping[str, Image]

    def find(self, reference: str) -> Image | None:
        return self.images.get(normalise(reference))

    @classmethod
    def load(cls, path: Path | None) -> ImageTable:
        entries: dict[str, Any] = dict(BUILTIN_IMAGES)
        source = "built-in images"
        if path is not None:
            source = str(path)
            try:
                document = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ConfigError(source, "", f"a readable YAML file ({e})") from e
            entries.update(expect_mapping(source, "images", expect_mapping(source, "", document).get("images", {})))
        return cls({normalise(ref): _image(source, ref, entry) for ref, entry in entries.items()})


def _image(source: str, reference: str, entry: Any) -> Image:
    where = f"images.{reference}"
    entry = expect_mapping(source, where, entry or {})
    unknown = set(entry) - {"entrypoint", "cmd", "env", "workingDir"}
    if unknown:
        raise ConfigError(source, where, f"only entrypoint, cmd, env, workingDir (not {sorted(unknown)})")
    env = {"PATH": DEFAULT_PATH, **expect_str_map(source, f"{where}.env", entry.get("env", {}))}
    working_dir = entry.get("workingDir")
    if working_dir is not None and not isinstance(working_dir, str):
        raise ConfigError(source, f"{where}.workingDir", "a string")
    normalised = normalise(reference)
    config = {
        "entrypoint": expect_str_list(source, f"{where}.entrypoint", entry.get("entrypoint", [])),
        "cmd": expect_str_list(source, f"{where}.cmd", entry.get("cmd", [])),
        "env": env,
        "workingDir": working_dir,
    }
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return Image(
        reference=normalised,
        image_id=f"{repository_of(normalised)}@sha256:{digest}",
        entrypoint=tuple(config["entrypoint"]),
        cmd=tuple(config["cmd"]),
        env=tuple(env.items()),
        working_dir=working_dir,
    )
