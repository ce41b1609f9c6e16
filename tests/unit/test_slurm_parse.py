"""Reading Slurm: node facts from its JSON (22.05's sinfo, 23.02+'s scontrol), the version
learned from the answer, a job's state from squeue columns a user cannot write into."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bridge.errors import SlurmError
from bridge.slurm import CommandSlurm, node_from_json, reason
from bridge.slurmversion import SlurmVersion

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SINFO_2205 = SAMPLES / "sinfo-22.05.json"
"""Real ``sinfo --json`` of Slurm 22.05.8 (testenv), after
``scontrol update NodeName=elastic1 AvailableFeatures='fast CPUTot=64 RealMemory=99999' ActiveFeatures=...``
and the same for elastic2 with ``x<newline>NodeName=elastic1 CPUTot=99``."""

NODE_2411 = {  # the shape of scontrol --json show node from 23.02 (data_parser v0.0.39+)
    "name": "gpu01", "state": ["IDLE", "CLOUD", "POWERED_DOWN"], "features": ["h100", "ib"],
    "cpus": 32, "real_memory": {"set": True, "infinite": False, "number": 256000},
    "gres": "gpu:h100:8(S:0-1),mps:100", "reason": "slurm-k8s-bridge: pod x: Forbidden",
}
META_2411 = {"plugin": {"type": "openapi/slurmctld"},
             "slurm": {"version": {"major": "24", "micro": "5", "minor": "11"}, "release": "24.11.5"}}


def test_features_with_spaces_keys_and_newlines_change_no_node():
    facts = {n["name"]: node_from_json(n) for n in json.loads(SINFO_2205.read_text())["nodes"]}
    assert (facts["elastic1"].cpus, facts["elastic1"].real_memory_mb) == (2, 1000)
    assert facts["elastic1"].features == ("fast CPUTot=64 RealMemory=99999",)
    assert (facts["elastic2"].cpus, facts["elastic2"].features) == (2, ("x\nNodeName=elastic1 CPUTot=99",))
    assert facts["elastic1"].state == ("IDLE", "CLOUD", "POWERED_DOWN")
    assert (facts["gpu1"].cpus, facts["gpu1"].gres, facts["gpu1"].gres_count("gpu", "a100")) == (8, ("gpu:a100:2",), 2)


def test_2302_shape_lists_and_number_objects():
    facts = node_from_json(NODE_2411)
    assert (facts.name, facts.cpus, facts.real_memory_mb) == ("gpu01", 32, 256000)
    assert facts.gres == ("gpu:h100:8", "mps:100") and facts.features == ("h100", "ib")
    assert facts.state == ("IDLE", "CLOUD", "POWERED_DOWN")
    assert facts.reason.startswith("slurm-k8s-bridge: pod x")


def test_gres_text_with_keys_stays_in_the_gres():
    facts = node_from_json({**NODE_2411, "gres": "gpu:1g.10gb CPUTot=64:1"})
    assert facts.cpus == 32 and facts.gres == ("gpu:1g.10gb CPUTot=64:1",)
    assert facts.gres_count("gpu") == 1


def test_numbers_not_set_or_infinite_are_zero():
    facts = node_from_json({"name": "e1", "state": "idle", "cpus": {"set": False, "number": 9},
                            "real_memory": {"set": True, "infinite": True, "number": 0}, "features": "(null)"})
    assert (facts.cpus, facts.real_memory_mb, facts.features) == (0, 0, ())


def test_gres_counts_by_name_and_type():
    facts = node_from_json(NODE_2411)
    assert facts.gres_count("gpu") == 8
    assert facts.gres_count("gpu", "h100") == 8
    assert facts.gres_count("gpu", "a100") == 0
    assert facts.gres_count("mps") == 100


def test_reason_starts_with_the_bridge_name_on_one_bounded_line():
    text = reason("pod x:\n  Forbidden " + "y" * 500)
    assert text.startswith("slurm-k8s-bridge: pod x: Forbidden")
    assert "\n" not in text and len(text) <= 200
    assert reason("slurm-k8s-bridge: a") == "slurm-k8s-bridge: a"


# -- the commands, as each version answers ---------------------------------------------------

def _command(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f'#!/bin/bash\necho "{name} $*" >> "{bin_dir}/calls"\n{body}\n')
    path.chmod(0o755)


def _calls(bin_dir: Path) -> list[str]:
    path = bin_dir / "calls"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def slurm_2205(tmp_path: Path) -> Path:
    """scontrol and sinfo answering as 22.05.8 does (messages copied from it)."""
    _command(tmp_path, "scontrol", """
case "$*" in
  *--json*) echo "scontrol: unrecognized option '--json'" >&2; echo 'Try "scontrol --help" for more information' >&2; exit 1;;
  "update NodeName=ghost7"*) echo "slurm_update error: Invalid node name specified" >&2; exit 1;;
  "--oneliner show node "*ghost7*) echo "Node ghost7 not found"; exit 1;;
esac""")
    _command(tmp_path, "sinfo", f'cat "{SINFO_2205}"')
    return tmp_path


@pytest.fixture
def slurm_2411(tmp_path: Path) -> Path:
    """scontrol answering as 23.02+ does: JSON for the nodes asked for, one unknown name fails all."""
    everything = {"meta": META_2411, "nodes": [NODE_2411, {**NODE_2411, "name": "gpu02"}]}
    (tmp_path / "all.json").write_text(json.dumps(everything))
    (tmp_path / "one.json").write_text(json.dumps({"meta": META_2411, "nodes": [NODE_2411]}))
    _command(tmp_path, "scontrol", f"""
case "$*" in
  "--json show node gpu01") cat "{tmp_path}/one.json";;
  "--json show node") cat "{tmp_path}/all.json";;
  "--json show node "*) echo "Node ghost7 not found" ; exit 1;;
esac""")
    return tmp_path


def test_2205_is_read_through_sinfo_where_text_will_not_do_and_its_version_learned_once(slurm_2205):
    # The text read (tests/unit/test_slurm_text.py) steps aside for an unknown name, and for
    # text that is not the nodes asked; --json is tried once.
    slurm = CommandSlurm(str(slurm_2205))
    facts = slurm.node_facts(["elastic1", "ghost7"])
    assert list(facts) == ["elastic1"] and facts["elastic1"].cpus == 2
    assert slurm.version == SlurmVersion(22, 5, 8)
    slurm.node_facts(["elastic2"])
    assert _calls(slurm_2205) == ["scontrol --json show node elastic1,ghost7",
                                  "scontrol --oneliner show node elastic1,ghost7", "sinfo --json",
                                  "scontrol --oneliner show node elastic2", "sinfo --json"]


def test_2302_on_reads_only_the_nodes_asked_for_in_one_process(slurm_2411):
    slurm = CommandSlurm(str(slurm_2411))
    assert slurm.node_facts(["gpu01"])["gpu01"].real_memory_mb == 256000
    assert slurm.version == SlurmVersion(24, 11, 5) and str(slurm.version) == "24.11.5"
    assert _calls(slurm_2411) == ["scontrol --json show node gpu01"]


def test_an_unknown_node_leaves_the_known_ones_readable(slurm_2411):
    facts = CommandSlurm(str(slurm_2411)).node_facts(["gpu01", "ghost7"])
    assert list(facts) == ["gpu01"]


def test_a_node_update_slurm_refuses_names_the_cause_in_one_line(slurm_2205):
    with pytest.raises(SlurmError) as error:
        CommandSlurm(str(slurm_2205)).set_down(["ghost7"], "x")
    assert str(error.value) == "scontrol update NodeName=ghost7 failed: slurm_update error: Invalid node name specified"


def test_node_read_keeps_every_fact_of_the_whole_answer(slurm_2205):
    # The read builds only the fields the bridge uses (a 10,000-node sinfo --json is 12.7 MB):
    # the facts must be those of the whole records.
    records = json.loads(SINFO_2205.read_text())["nodes"]
    facts = CommandSlurm(str(slurm_2205)).node_facts([r["name"] for r in records])
    assert facts == {r["name"]: node_from_json(r) for r in records}


@pytest.mark.parametrize("answer", ['{"nodes": {"elastic1": {}}}', '{"nodes": [1, 2]}', "[]"])
def test_node_answer_of_another_shape_is_a_slurm_error(tmp_path, answer):
    _command(tmp_path, "scontrol", f"echo '{answer}'")
    with pytest.raises(SlurmError, match="no list of nodes|not a JSON object"):
        CommandSlurm(str(tmp_path)).node_facts(["e1"])


def test_answer_that_is_not_json_is_a_slurm_error(tmp_path):
    _command(tmp_path, "scontrol", "echo 'garbage'")
    with pytest.raises(SlurmError, match="not JSON: garbage"):
        CommandSlurm(str(tmp_path)).node_facts(["e1"])


def test_missing_scontrol_says_where_it_looked(tmp_path):
    with pytest.raises(SlurmError, match="not found \\(set slurm.bin_dir"):
        CommandSlurm(str(tmp_path / "nowhere")).node_facts(["e1"])


def test_a_bin_dir_that_names_scontrol_itself_is_a_slurm_error_not_a_crash(tmp_path):
    """``bin_dir: /usr/bin/scontrol``, a likely slip: the hooks exit 69 with one line."""
    _command(tmp_path, "scontrol", "exit 0")
    with pytest.raises(SlurmError, match="cannot run .*/scontrol/scontrol: Not a directory \\(set slurm.bin_dir"):
        CommandSlurm(str(tmp_path / "scontrol")).node_facts(["e1"])


def test_job_state_comes_from_columns_a_user_cannot_write(tmp_path):
    # scontrol -o show job of a job named 'x JobState=COMPLETED Restarts=7' with a comment
    # 'JobState=COMPLETED Restarts=9' said both twice; squeue's columns hold only Slurm's values.
    _command(tmp_path, "squeue", """
case "$*" in
  *--jobs=5*) echo "PENDING             2                   ";;
  *) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1;;
esac""")
    slurm = CommandSlurm(str(tmp_path))
    assert slurm.job_state(5) == ("PENDING", 2)
    assert slurm.job_state(6) is None
    assert _calls(tmp_path)[0] == "squeue --noheader --states=all --jobs=5 --Format=State,RestartCnt"


def test_planned_starts_are_the_placed_pending_jobs_in_local_time(tmp_path, monkeypatch):
    # As 22.05.8 answers: a job backfill placed on elastic[1-4] at the running job's end, one it
    # has not placed yet (N/A, (null)).
    monkeypatch.setenv("TZ", "Europe/Berlin")
    monkeypatch.setenv("SLURM_TIME_FORMAT", "relative")  # a user's taste: the read asks for the standard shape
    time.tzset()
    try:
        _command(tmp_path, "squeue", """
[ "$SLURM_TIME_FORMAT" = standard ] || { echo "2 Tomorr 04:44 elastic[1-4]"; exit 0; }
echo '2 2026-12-06T04:44:31 elastic[1-4]'; echo '3 N/A (null)'""")
        planned = CommandSlurm(str(tmp_path)).planned_starts()
        assert _calls(tmp_path) == ["squeue --noheader --states=PENDING --format=%A %S %Y"]
        # 04:44:31 in Berlin (UTC+1 in December) is 03:44:31 UTC.
        assert planned == [(1796528671.0, ("elastic1", "elastic2", "elastic3", "elastic4"))]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("line", ["2 2026-12-06T04:44:31", "x 2026-12-06T04:44:31 e1", "2 tomorrow e1", "2 2026-12-06T04:44:31 e[1-"])
def test_a_planned_start_of_another_shape_is_a_slurm_error(tmp_path, line):
    _command(tmp_path, "squeue", f'echo "{line}"')
    with pytest.raises(SlurmError, match="squeue: unexpected answer for the pending jobs"):
        CommandSlurm(str(tmp_path)).planned_starts()


def test_long_node_lists_are_split_under_the_argument_limit(tmp_path):
    _command(tmp_path, "scontrol", "exit 0")
    nodes = [f"n{i}x" for i in range(20_000)]  # no two fold together: ~120 KB as one hostlist
    CommandSlurm(str(tmp_path)).power_down(nodes, "r")
    calls = _calls(tmp_path)
    assert len(calls) == 2 and all(len(c) < 100_100 for c in calls)
    assert sum(c.split()[2].count(",") + 1 for c in calls) == 20_000


def test_power_down_uses_the_power_command_where_the_version_takes_a_reason(tmp_path):
    _command(tmp_path, "scontrol", "exit 0")
    slurm = CommandSlurm(str(tmp_path))
    slurm.version = SlurmVersion.parse("24.11.5")  # power commands, but no Reason= before 25.05
    slurm.power_down(["elastic1"], "pod gone")
    slurm.version = SlurmVersion.parse("26.05.5")
    slurm.power_down(["elastic1"], "pod gone")
    old, new = _calls(tmp_path)
    assert old == "scontrol update NodeName=elastic1 State=POWER_DOWN_FORCE Reason=slurm-k8s-bridge: pod gone"
    assert new == "scontrol power down force elastic1 Reason=slurm-k8s-bridge: pod gone"


def test_version_table():
    assert SlurmVersion.parse("22.05.8").supports("cloud_reg_addrs")
    assert not SlurmVersion.parse("23.11.0").supports("cloud_reg_addrs")
    assert not SlurmVersion.parse("22.05.8").supports("json_node_read")
    assert SlurmVersion.parse("24.11.5").supports("power_commands")
    assert not SlurmVersion.parse("24.11.5").supports("requeue_on_resume_failure")
    assert SlurmVersion.parse("slurm 26.05.5").supports("requeue_on_resume_failure")
    assert SlurmVersion.from_meta({"Slurm": {"version": {"major": 22, "minor": 5, "micro": 8}}}) == SlurmVersion(22, 5, 8)
    assert SlurmVersion.from_meta({}) is None
    with pytest.raises(KeyError):
        SlurmVersion.parse("24.11").supports("power_command")  # a typo is not "unsupported"
    with pytest.raises(ValueError):
        SlurmVersion.parse("banana")


def test_commands_run_with_no_path(slurm_2205, monkeypatch):
    monkeypatch.delenv("PATH", raising=False)  # hooks have none: commands go by absolute path
    assert "elastic1" in CommandSlurm(str(slurm_2205)).node_facts(["elastic1"])
    assert os.environ.get("PATH") is None



def test_warm_pool_powers_nodes_with_the_update_2205_takes(slurm_2205):
    slurm = CommandSlurm(str(slurm_2205))
    slurm.node_facts(["elastic1"])
    slurm.power_up(["elastic1", "elastic2"])
    slurm.power_down_idle(["elastic1"])
    assert _calls(slurm_2205)[-2:] == ["scontrol update NodeName=elastic[1-2] State=POWER_UP",
                                       "scontrol update NodeName=elastic1 State=POWER_DOWN"]


def test_warm_pool_powers_nodes_with_scontrol_power_from_2405(slurm_2411):
    slurm = CommandSlurm(str(slurm_2411))
    slurm.node_facts(["gpu01"])
    slurm.power_up(["gpu01"])
    slurm.power_down_idle(["gpu01"])
    assert _calls(slurm_2411)[-2:] == ["scontrol power up gpu01", "scontrol power down gpu01"]
