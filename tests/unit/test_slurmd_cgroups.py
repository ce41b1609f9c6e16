"""The slurmd image's entrypoint with ``cgroups: true`` (SLURMD_CGROUPS): it starts slurmd only
where the cgroup controllers slurmd's plugins use can take a new cgroup, and otherwise stops
the pod with one line and its own exit code, so no job can run on a node whose plugins fail
("Plugin initialization failed", shown COMPLETED 0:0 by Slurm)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "slurmd" / "entrypoint.sh"
CONTROLLERS = ("freezer", "cpuset", "memory", "devices")
KEY_MISSING = 2
"""The next check's exit code: reaching it means the cgroup check let slurmd's start go on."""


def entrypoint(cgroup_root: Path, tmp_path: Path, *, cgroups: str = "1", wrap: list[str] = ()) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "SLURMD_CGROUP_ROOT": str(cgroup_root), "SLURMD_CGROUPS": cgroups,
           "MUNGE_KEY_FILE": str(tmp_path / "no-key")}
    return subprocess.run([*wrap, "sh", str(ENTRYPOINT), "-V"], env=env, capture_output=True, text=True, timeout=30)


def hierarchy(root: Path, controllers: tuple[str, ...] = CONTROLLERS) -> Path:
    for controller in controllers:
        (root / controller).mkdir(parents=True)
    return root


def test_writable_controllers_let_slurmd_start_and_leave_nothing_behind(tmp_path):
    root = hierarchy(tmp_path / "cgroup")
    result = entrypoint(root, tmp_path)
    assert result.returncode == KEY_MISSING, result.stderr
    assert "cgroups: true" not in result.stderr
    assert all(list((root / c).iterdir()) == [] for c in CONTROLLERS)


def test_a_controller_that_is_not_mounted_stops_the_pod_with_exit_6(tmp_path):
    root = hierarchy(tmp_path / "cgroup", ("freezer", "cpuset", "memory"))
    result = entrypoint(root, tmp_path)
    assert result.returncode == 6
    assert result.stderr == (f"slurmd-entrypoint: cgroups: true but {root}/devices is not mounted: slurmd's cgroup "
                             f"plugins would fail every job; run the pod with securityContext privileged: true "
                             f"(docs/hpc-nodes.md#cgroups)\n")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a read-only mount needs root")
def test_a_read_only_controller_as_in_an_unprivileged_pod_stops_the_pod_with_exit_6(tmp_path):
    root = hierarchy(tmp_path / "cgroup")
    # What runc gives a container that is not privileged: each controller mounted read-only.
    script = (f'mount -t tmpfs -o ro none "{root}/memory" && exec "$@"')
    result = entrypoint(root, tmp_path, wrap=["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "-"])
    assert result.returncode == 6
    assert result.stderr.startswith(f"slurmd-entrypoint: cgroups: true but {root}/memory is read-only: ")


def test_cgroup_v2_is_refused_with_exit_7(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    result = entrypoint(root, tmp_path)
    assert result.returncode == 7
    assert result.stderr.startswith(f"slurmd-entrypoint: cgroups: true but {root} is cgroup v2, which this image "
                                    f"does not support yet")
    assert result.stderr.count("\n") == 1


def test_without_cgroups_nothing_is_checked(tmp_path):
    result = entrypoint(tmp_path / "nothing-here", tmp_path, cgroups="")
    assert result.returncode == KEY_MISSING and "cgroups: true" not in result.stderr
