"""The daemon's node read on Slurm 22.05: the whole ``sinfo --json`` (0.6 s at 10,000 nodes) only
when sinfo's summary of states and reasons changed, or once a minute; answers recorded from the
real 22.05.8 (tests/samples: a drained node whose reason holds ``|``, a tab and a newline)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridge.slurm import SUMMARY, CommandSlurm

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slurm_2205(tmp_path: Path) -> Path:
    """22.05.8's sinfo and scontrol; ``now.json`` and ``now.txt`` are what sinfo answers."""
    shutil.copy(SAMPLES / "sinfo-22.05.json", tmp_path / "now.json")
    shutil.copy(SAMPLES / "sinfo-summary-22.05.txt", tmp_path / "now.txt")
    for name, body in {
        "scontrol": """case "$*" in
  *--json*) echo "scontrol: unrecognized option '--json'" >&2; exit 1;;
esac""",
        "sinfo": f"""case "$*" in
  --json) cat "{tmp_path}/now.json";;
  "{" ".join(SUMMARY)}") cat "{tmp_path}/now.txt";;
  *) echo "sinfo: unexpected arguments: $*" >&2; exit 1;;
esac""",
    }.items():
        path = tmp_path / name
        path.write_text(f'#!/bin/bash\necho "{name} $*" >> "{tmp_path}/calls"\n{body}\n')
        path.chmod(0o755)
    return tmp_path


def json_reads(bin_dir: Path) -> int:
    return (bin_dir / "calls").read_text().splitlines().count("sinfo --json")


def drain_elastic2(bin_dir: Path) -> None:
    shutil.copy(SAMPLES / "sinfo-22.05-drained.json", bin_dir / "now.json")
    shutil.copy(SAMPLES / "sinfo-summary-22.05-drained.txt", bin_dir / "now.txt")


def test_an_unchanged_summary_reuses_the_last_json_read(slurm_2205):
    clock = Clock()
    slurm = CommandSlurm(str(slurm_2205), reread=60, clock=clock)
    first = slurm.node_facts(["elastic1", "elastic2"])
    clock.now += 30
    assert slurm.node_facts(["elastic1", "elastic2"]) == first
    assert json_reads(slurm_2205) == 1


def test_a_changed_summary_reads_the_json_again_and_its_reason_whole(slurm_2205):
    clock = Clock()
    slurm = CommandSlurm(str(slurm_2205), reread=60, clock=clock)
    assert "DRAIN" not in slurm.node_facts(["elastic2"])["elastic2"].state
    drain_elastic2(slurm_2205)
    facts = slurm.node_facts(["elastic2", "elastic9"])
    assert "DRAIN" in facts["elastic2"].state
    assert facts["elastic2"].reason == "a|b x\tc\nNodeName=elastic9 slurm-k8s-bridge: y"
    assert list(facts) == ["elastic2"]  # the reason's second line names no node
    assert json_reads(slurm_2205) == 2


def test_a_change_the_summary_cannot_show_is_seen_within_reread(slurm_2205):
    clock = Clock()
    slurm = CommandSlurm(str(slurm_2205), reread=60, clock=clock)
    slurm.node_facts(["elastic1"])
    clock.now += 60
    slurm.node_facts(["elastic1"])
    assert json_reads(slurm_2205) == 2


def test_the_readers_own_update_is_seen_by_its_next_read(slurm_2205):
    slurm = CommandSlurm(str(slurm_2205), reread=60, clock=Clock())
    slurm.node_facts(["elastic1"])
    slurm.set_drained(["elastic1"], "maintenance")
    slurm.node_facts(["elastic1"])
    assert json_reads(slurm_2205) == 2


def test_a_hook_reads_the_json_every_time_and_never_the_summary(slurm_2205):
    slurm = CommandSlurm(str(slurm_2205))
    slurm.node_facts(["elastic1"])
    slurm.node_facts(["elastic1"])
    calls = (slurm_2205 / "calls").read_text().splitlines()
    assert json_reads(slurm_2205) == 2 and not any("--Format" in c for c in calls)


def test_2302_on_reads_the_nodes_asked_for_each_time(tmp_path):
    (tmp_path / "scontrol").write_text(f"""#!/bin/bash
echo "scontrol $*" >> "{tmp_path}/calls"
cat "{SAMPLES / 'scontrol-show-node-24.11.json'}"
""")
    (tmp_path / "scontrol").chmod(0o755)
    slurm = CommandSlurm(str(tmp_path), reread=60, clock=Clock())
    name = next(iter(slurm.node_facts(["gpu01", "elastic1"])))
    slurm.node_facts([name])
    assert (tmp_path / "calls").read_text().splitlines()[-1] == f"scontrol --json show node {name}"
    assert len((tmp_path / "calls").read_text().splitlines()) == 2


def test_while_nodes_keep_changing_the_summary_is_skipped_until_two_reads_agree(slurm_2205):
    clock = Clock()
    slurm = CommandSlurm(str(slurm_2205), reread=60, clock=clock)
    slurm.node_facts(["elastic2"])
    drain_elastic2(slurm_2205)
    for _ in range(4):
        clock.now += 5
        facts = slurm.node_facts(["elastic2"])
    assert "DRAIN" in facts["elastic2"].state
    summary = f"sinfo {' '.join(SUMMARY)}"
    assert (slurm_2205 / "calls").read_text().splitlines()[3:] == [  # after the first read
        summary, "sinfo --json",  # changed: read, and the next look goes straight to the JSON
        "sinfo --json",  # the same as the last read: quiet again
        summary, "sinfo --json",  # a summary to compare with from now on
        summary,  # unchanged: nothing more
    ]
