"""A pod's volumes on the host, and the mounts of each container (the kubelet's volume manager).

Each volume gets a directory under the pod's directory (`<state>/pods/<uid>/volumes/<name>`),
except hostPath, which is the host path itself. secret, configMap, downwardAPI and projected
volumes are files written once at pod start and mounted read-only; emptyDir with medium Memory or
HugePages is a tmpfs. `teardown()` unmounts and removes all of it.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from lightkube.models.core_v1 import Container, KeyToPath, Volume
from lightkube.resources.core_v1 import Pod

from .env import PodAddresses, expand, field_value, read_bytes, resource_value
from .runtime import Mount

log = logging.getLogger(__name__)

DEFAULT_MODE = 0o644
READ_ONLY_KINDS = ("secret", "configMap", "downwardAPI", "projected")


class VolumeError(Exception):
    """A volume cannot be set up (yet): the kubelet's FailedMount."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {message}')
        self.volume = volume


@dataclass(frozen=True)
class _Prepared:
    path: Path
    read_only: bool


class PodVolumes:
    def __init__(self, pod: Pod, directory: Path, api: Any, addresses: PodAddresses) -> None:
        self._pod = pod
        self._directory = directory
        self._api = api
        self._addresses = addresses
        self._volumes: dict[str, _Prepared] = {}
        self._tmpfs: list[Path] = []

    async def setup(self) -> None:
        """Prepare every volume not prepared yet; raises VolumeError for the first that fails."""
        for volume in self._pod.spec.volumes or []:
            if volume.name not in self._volumes:
                self._volumes[volume.name] = await self._prepare(volume)

    def mounts(self, container: Container, env: dict[str, str]) -> list[Mount]:
        mounts = []
        for mount in container.volumeMounts or []:
            prepared = self._volumes.get(mount.name)
            if prepared is None:
                raise VolumeError(mount.name, "volume is not declared by the pod")
            source = prepared.path
            sub_path = mount.subPath or (expand(mount.subPathExpr, env) if mount.subPathExpr else "")
            if sub_path:
                source = _sub_path(mount.name, prepared.path, sub_path)
            mounts.append(Mount(source, mount.mountPath, bool(mount.readOnly) or prepared.read_only))
        return mounts

    def teardown(self) -> None:
        for path in reversed(self._tmpfs):
            result = subprocess.run(["umount", "--lazy", str(path)], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                log.warning("could not unmount %s: %s", path, result.stderr.strip())
        self._tmpfs.clear()
        self._volumes.clear()
        shutil.rmtree(self._directory, ignore_errors=True)

    # --- each kind of volume -----------------------------------------------------------------

    async def _prepare(self, volume: Volume) -> _Prepared:
        if volume.hostPath is not None:
            return _Prepared(_host_path(volume), read_only=False)
        path = self._directory / "volumes" / volume.name
        path.mkdir(parents=True, exist_ok=True)
        if volume.emptyDir is not None:
            if volume.emptyDir.medium in ("Memory", "HugePages") or (volume.emptyDir.medium or "").startswith(
                "HugePages-"
            ):
                self._mount_tmpfs(path, volume.emptyDir.sizeLimit)
            else:
                path.chmod(0o777)  # the kubelet's emptyDir mode: any user may write, no sticky bit
            return _Prepared(path, read_only=False)
        files = await self._files(volume)
        _write_files(path, files)
        return _Prepared(path, read_only=True)

    async def _files(self, volume: Volume) -> dict[str, tuple[bytes, int]]:
        if volume.secret is not None:
            source = volume.secret
            return await self._object_files(volume.name, "Secret", source.secretName, source, source.defaultMode)
        if volume.configMap is not None:
            source = volume.configMap
            return await self._object_files(volume.name, "ConfigMap", source.name, source, source.defaultMode)
        if volume.downwardAPI is not None:
            source = volume.downwardAPI
            return self._downward_files(volume.name, source.items or [], source.defaultMode)
        if volume.projected is not None:
            return await self._projected_files(volume)
        kinds = [k for k, v in volume.to_dict().items() if k != "name" and v is not None]
        raise VolumeError(volume.name, f"volume type {kinds} is not supported by the test environment")

    async def _object_files(
        self, volume: str, kind: str, name: str | None, source: Any, default_mode: int | None
    ) -> dict[str, tuple[bytes, int]]:
        data = await read_bytes(self._api, kind, name or "", self._pod.metadata.namespace)
        if data is None:
            if source.optional:
                return {}
            raise VolumeError(volume, f'{kind.lower()} "{name}" not found')
        mode = DEFAULT_MODE if default_mode is None else default_mode
        items: list[KeyToPath] = source.items or []
        if not items:
            return {key: (value, mode) for key, value in data.items()}
        files = {}
        for item in items:
            if item.key not in data:
                if source.optional:
                    continue
                noun = "secret key" if kind == "Secret" else "config key"
                raise VolumeError(volume, f"{kind.lower()} references non-existent {noun}: {item.key}")
            files[item.path] = (data[item.key], mode if item.mode is None else item.mode)
        return files

    def _downward_files(self, volume: str, items: list[Any], default_mode: int | None) -> dict[str, tuple[bytes, int]]:
        mode = DEFAULT_MODE if default_mode is None else default_mode
        files = {}
        for item in items:
            if item.fieldRef is not None:
                value = field_value(self._pod, item.fieldRef.fieldPath, self._addresses)
            else:
                ref = item.resourceFieldRef
                container = next(c for c in self._pod.spec.containers if c.name == ref.containerName)
                value = resource_value(container, ref.resource, str(ref.divisor) if ref.divisor else None, {})
            files[item.path] = (value.encode(), mode if item.mode is None else item.mode)
        return files

    async def _projected_files(self, volume: Volume) -> dict[str, tuple[bytes, int]]:
        projected = volume.projected
        files: dict[str, tuple[bytes, int]] = {}
        for source in projected.sources or []:
            if source.secret is not None:
                files.update(
                    await self._object_files(
                        volume.name, "Secret", source.secret.name, source.secret, projected.defaultMode
                    )
                )
            elif source.configMap is not None:
                files.update(
                    await self._object_files(
                        volume.name, "ConfigMap", source.configMap.name, source.configMap, projected.defaultMode
                    )
                )
            elif source.downwardAPI is not None:
                files.update(self._downward_files(volume.name, source.downwardAPI.items or [], projected.defaultMode))
            elif source.serviceAccountToken is not None:
                # No token issuer here: the file exists so programs that read it find one.
                mode = DEFAULT_MODE if projected.defaultMode is None else projected.defaultMode
                files[source.serviceAccountToken.path] = (b"testenv-no-token", mode)
        return files

    def _mount_tmpfs(self, path: Path, size_limit: str | None) -> None:
        options = "mode=1777" + (f",size={size_limit}" if size_limit else "")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            log.warning("emptyDir %s stays a plain directory (tmpfs failed: %s)", path, result.stderr.strip())
            return
        self._tmpfs.append(path)


def _host_path(volume: Volume) -> Path:
    source = volume.hostPath
    path = Path(source.path)
    kind = source.type or ""
    if kind == "DirectoryOrCreate" and not path.exists():
        path.mkdir(mode=0o755, parents=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.touch(mode=0o644)
    checks = {
        "Directory": path.is_dir,
        "DirectoryOrCreate": path.is_dir,
        "File": path.is_file,
        "FileOrCreate": path.is_file,
        "Socket": path.is_socket,
        "CharDevice": path.is_char_device,
        "BlockDevice": path.is_block_device,
    }
    if kind in checks and not checks[kind]():
        raise VolumeError(volume.name, f"hostPath type check failed: {path} is not a {kind}")
    if kind and kind not in checks:
        raise VolumeError(volume.name, f"hostPath type {kind!r} is not supported")
    return path


def _sub_path(volume: str, root: Path, sub_path: str) -> Path:
    relative = PurePosixPath(sub_path)
    if relative.is_absolute() or ".." in relative.parts:
        raise VolumeError(volume, f"subPath {sub_path!r} must be a relative path without '..'")
    path = root / relative
    if not os.path.lexists(path):
        path.mkdir(parents=True)  # the kubelet creates a missing subPath as a directory
    return path


def _write_files(root: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for relative, (content, mode) in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.chmod(path, stat.S_IMODE(mode))
