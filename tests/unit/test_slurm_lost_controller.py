"""A slurmctld killed and restarted in the middle of a hook's Slurm read (systemd's
Restart=always): the read waits for it instead of failing the job's nodes, which would requeue
the job with Slurm's 2-minute hold."""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path

import pytest

from bridge.errors import SlurmError
from bridge.slurm import CommandSlurm

NODE = '{"name": "elastic1", "cpus": 1, "real_memory": 100, "state": ["IDLE", "CLOUD"]}'


def scontrol(tmp_path: Path, failures: int, message: str) -> Path:
    """A scontrol whose first ``failures`` calls fail with ``message`` as 24.11's does (exit 1,
    stderr), then answer; every call is logged."""
    script = tmp_path / "scontrol"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo "$*" >> {tmp_path}/calls
        if [ $(wc -l < {tmp_path}/calls) -le {failures} ]; then echo "{message}" >&2; exit 1; fi
        printf '{{"meta": {{"slurm": {{"release": "24.11.5"}}}}, "nodes": [{NODE}]}}'
        """))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("message", [
    "slurm_load_node error: Zero Bytes were transmitted or received",
    "slurm_load_node error: Unable to contact slurm controller (connect failure)",
    "slurm_load_node error: Socket timed out on send/recv operation",
])
def test_a_read_waits_for_a_slurmctld_that_went_away(tmp_path, message):
    clock = Clock()
    slurm = CommandSlurm(str(scontrol(tmp_path, 3, message)), clock=clock, sleep=clock.sleep)
    assert slurm.node_facts(["elastic1"])["elastic1"].state == ("IDLE", "CLOUD")
    assert len(calls(tmp_path)) == 4 and clock.now == 3.0  # once a second until it answered


def test_a_read_gives_up_after_lost_controller_seconds(tmp_path):
    clock = Clock()
    slurm = CommandSlurm(str(scontrol(tmp_path, 1000, "slurm_load_node error: Zero Bytes were transmitted or received")),
                         lost_controller=5, clock=clock, sleep=clock.sleep)
    with pytest.raises(SlurmError, match="Zero Bytes were transmitted or received"):
        slurm.node_facts(["elastic1"])
    assert len(calls(tmp_path)) == 6 and clock.now == 5.0


def test_the_daemon_does_not_wait_it_looks_again_at_its_next_tick(tmp_path):
    clock = Clock()
    slurm = CommandSlurm(str(scontrol(tmp_path, 1000, "slurm_load_node error: Zero Bytes were transmitted or received")),
                         lost_controller=0, clock=clock, sleep=clock.sleep)
    with pytest.raises(SlurmError):
        slurm.node_facts(["elastic1"])
    assert len(calls(tmp_path)) == 1


def test_other_errors_and_updates_are_not_repeated(tmp_path):
    clock = Clock()
    slurm = CommandSlurm(str(scontrol(tmp_path, 1000, "slurm_update error: Invalid node state specified")),
                         clock=clock, sleep=clock.sleep)
    with pytest.raises(SlurmError, match="Invalid node state"):
        slurm.node_facts(["elastic1"])
    assert len(calls(tmp_path)) == 1
    (tmp_path / "calls").unlink()
    slurm = CommandSlurm(str(scontrol(tmp_path, 1000, "slurm_update error: Zero Bytes were transmitted or received")),
                         clock=clock, sleep=clock.sleep)
    with pytest.raises(SlurmError, match="Zero Bytes"):
        slurm.set_down(["elastic1"], "pod failed")  # it may have been applied: not sent twice
    assert len(calls(tmp_path)) == 1 and calls(tmp_path)[0].startswith("update NodeName=elastic1 State=DOWN")
