"""The test cluster's slurm.conf and the snippets users copy cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from testenv.slurm import (
    CALLER_KEYS, CLOUD_NODES_EXAMPLE, POD_GPU_FILES, SNIPPET, ClusterConfig, Hooks, Layout, NodeGroup,
    Timeouts, read_node_groups, read_settings, render_gres_conf, render_slurm_conf,
)
from testenv.slurm.config import gpu_devices

HOOKS = Hooks(resume=Path("/t/resume"), suspend=Path("/t/suspend"),
              resume_fail=Path("/t/resume-fail"), prolog_slurmctld=Path("/t/prolog"))


def _config(tmp_path: Path, **kwargs: object) -> ClusterConfig:
    defaults: dict[str, object] = {"layout": Layout(tmp_path), "slurmctld_port": 20000,
                                   "node_base_port": 20001}
    return ClusterConfig(**{**defaults, **kwargs})  # type: ignore[arg-type]


def _conf_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in _conf_lines(text)
                if not line.startswith(("NodeName=", "PartitionName=")))


def test_the_test_cluster_runs_every_site_setting_unchanged(tmp_path: Path) -> None:
    site = read_settings(SNIPPET)
    generated = _settings(render_slurm_conf(_config(tmp_path, hooks=HOOKS)))
    for key, value in site.items():
        assert key in generated, f"{key} from {SNIPPET.name} is not in the test slurm.conf"
        if key not in CALLER_KEYS:
            assert generated[key] == value, key


def test_hooks_and_timeouts_are_the_callers(tmp_path: Path) -> None:
    cfg = _config(tmp_path, hooks=HOOKS, timeouts=Timeouts(suspend_time=7, resume_timeout=40,
                                                           suspend_timeout=3))
    generated = _settings(render_slurm_conf(cfg))
    assert generated["ResumeProgram"] == "/t/resume"
    assert generated["SuspendProgram"] == "/t/suspend"
    assert generated["ResumeFailProgram"] == "/t/resume-fail"
    assert generated["PrologSlurmctld"] == "/t/prolog"
    assert (generated["SuspendTime"], generated["ResumeTimeout"],
            generated["SuspendTimeout"]) == ("7", "40", "3")


def test_hooks_not_given_are_left_out(tmp_path: Path) -> None:
    generated = _settings(render_slurm_conf(_config(tmp_path)))
    assert not {"ResumeProgram", "SuspendProgram", "ResumeFailProgram",
                "PrologSlurmctld"} & generated.keys()


def test_relative_hook_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        _config(tmp_path, hooks=Hooks(resume=Path("slurm-k8s-resume")))


def test_the_site_snippet_says_why_for_every_setting() -> None:
    previous = ""
    for line in SNIPPET.read_text().splitlines():
        is_setting = bool(line) and not line.startswith("#")
        if is_setting:
            assert previous.startswith("#") or previous in read_settings(SNIPPET), (
                f"{line!r} has no comment above it")
            previous = line.split("=", 1)[0]
        else:
            previous = line


def test_each_node_gets_its_own_port_on_the_shared_host(tmp_path: Path) -> None:
    cfg = _config(tmp_path, node_groups=(NodeGroup(count=3), NodeGroup(prefix="gpu", count=1,
                                                                       gres="gpu:1")))
    nodes = [line for line in _conf_lines(render_slurm_conf(cfg))
             if line.startswith("NodeName=")]
    assert nodes[0].endswith("State=CLOUD Port=[20001-20003]")
    assert nodes[1].endswith("State=CLOUD Port=20004")
    assert cfg.node_ports() == {"elastic1": 20001, "elastic2": 20002, "elastic3": 20003,
                                "gpu1": 20004}


def test_the_cloud_nodes_example_is_what_the_test_cluster_renders(tmp_path: Path) -> None:
    example = [line for line in _conf_lines(CLOUD_NODES_EXAMPLE.read_text())
               if line.startswith("NodeName=")]
    cfg = _config(tmp_path, node_groups=read_node_groups(CLOUD_NODES_EXAMPLE))
    rendered = [line.rsplit(" Port=", 1)[0] for line in _conf_lines(render_slurm_conf(cfg))
                if line.startswith("NodeName=")]
    assert rendered == example


def test_gres_conf_names_a_device_file_per_gpu(tmp_path: Path) -> None:
    cfg = _config(tmp_path, node_groups=read_node_groups(CLOUD_NODES_EXAMPLE))
    assert render_gres_conf(cfg).splitlines()[1:] == [
        f"NodeName=gpu[1-8] Name=gpu Type=a100 File={tmp_path}/dev/nvidia[0-3]"]
    assert "GresTypes" in _settings(render_slurm_conf(cfg))


def test_gres_conf_for_pods_names_the_entrypoints_links(tmp_path: Path) -> None:
    """A slurmd pod finds its GPUs where the entrypoint links them, whatever their host numbers."""
    groups = (NodeGroup(prefix="gpu", count=2, gres="gpu:a100:4"), NodeGroup(prefix="one", count=1, gres="gpu:1"))
    cfg = _config(tmp_path, node_groups=groups, gpu_files=POD_GPU_FILES)
    assert render_gres_conf(cfg).splitlines()[1:] == [
        "NodeName=gpu[1-2] Name=gpu Type=a100 File=/dev/slurm-gpu[0-3]",
        "NodeName=one1 Name=gpu File=/dev/slurm-gpu0"]
    assert gpu_devices(cfg) == []
