"""Slurm 22.05's node text, read strictly: a hook on 22.05 reads the nodes of its call from
``scontrol --oneliner show node NODES`` (sinfo --json cannot be filtered: 12.7 MB at 10,000
nodes), and keeps that text only where every line has the shape Slurm prints; anything a value
could have bent sends the read to the JSON. The samples are real 22.05.8 answers of one moment
(``python -m testenv.capture_text_sample``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.slurm import CommandSlurm, node_from_json, nodes_from_text

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
TEXT = (SAMPLES / "scontrol-show-node-22.05-text.txt").read_text()
BY_JSON = {n["name"]: node_from_json(n) for n in json.loads((SAMPLES / "sinfo-22.05-text.json").read_text())["nodes"]}
LINES = {line.split()[0].removeprefix("NodeName="): line for line in TEXT.splitlines()}
CLEAN = {"elastic1", "elastic2", "elastic5"}
"""Registered and running a job (elastic1, elastic2 with features a100,ib), drained with a reason."""


def test_registered_running_and_drained_nodes_read_as_the_json_says():
    assert nodes_from_text(TEXT, CLEAN) == {name: BY_JSON[name] for name in CLEAN}
    assert BY_JSON["elastic2"].features == ("a100", "ib")
    assert BY_JSON["elastic5"].reason == "maintenance" and "DRAIN" in BY_JSON["elastic5"].state


@pytest.mark.parametrize("node, why", [
    ("elastic3", "feature 'fast CPUTot=64 RealMemory=99999'"),
    ("elastic4", "reason holding ' Reason=' and ' Comment='"),
    ("elastic6", "node comment 'hello Gres=gpu:9', printed after the reason's place"),
])
def test_a_node_whose_values_hold_slurm_keys_is_not_read_from_text(node, why):
    assert nodes_from_text(TEXT, {node}) is None, why
    assert nodes_from_text(TEXT, CLEAN) is not None  # the other nodes' lines still read


def _edited(node: str, old: str, new: str) -> str:
    assert old in LINES[node]
    return TEXT.replace(LINES[node], LINES[node].replace(old, new, 1))


@pytest.mark.parametrize("old, new", [
    ("AvailableFeatures=a100,ib", "AvailableFeatures=a100 Zed=1"),          # unknown key: features cut short
    ("AvailableFeatures=a100,ib", "AvailableFeatures=a100 ActiveFeatures=x"),  # a key twice
    ("Partitions=elastic", "Partitions=elastic State=IDLE"),                 # a read key twice
    ("State=ALLOCATED+CLOUD", "State=IDLE*+CLOUD"),                          # a state not in Slurm's words
    ("CPUTot=1", "CPUTot=1.5"),
    ("ExtSensorsTemp=n/s", "ExtSensorsTemp=n/s Reason=lost [root@whenever]"),  # a stamp not Slurm's
    ("ExtSensorsTemp=n/s", "ExtSensorsTemp=n/s Reason=lost"),                # no stamp at all
    ("ExtSensorsTemp=n/s", "ExtSensorsTemp=n/s Reason=disk\nfull [root@2026-12-06T01:08:18]"),
    ("ExtSensorsTemp=n/s", "ExtSensorsTemp=n/s Extra=x"),
    ("NodeName=elastic2", "NodeName=elastic1"),                              # one node twice
])
def test_any_line_not_of_slurms_shape_sends_the_read_to_the_json(old, new):
    assert nodes_from_text(_edited("elastic2", old, new), {"elastic1", "elastic2"}) is None


def test_a_reason_is_read_without_slurms_user_and_time():
    text = _edited("elastic2", "ExtSensorsTemp=n/s", "ExtSensorsTemp=n/s Reason=slurm-k8s-bridge: pod x: a=b "
                   "[slurm@2026-12-06T01:08:18]")
    assert nodes_from_text(text, {"elastic2"})["elastic2"].reason == "slurm-k8s-bridge: pod x: a=b"


def test_a_node_missing_from_the_text_is_not_guessed():
    assert nodes_from_text(TEXT, {"elastic1", "elastic9"}) is None
    assert nodes_from_text("", {"elastic1"}) is None


# -- which command a 22.05 hook runs -----------------------------------------------------------

@pytest.fixture
def slurm_2205(tmp_path: Path) -> Path:
    """scontrol and sinfo answering as 22.05.8 does: no --json; text for the nodes asked, and
    for a name it does not know, 'Node ghost7 not found' among them and exit code 1."""
    (tmp_path / "text").write_text(TEXT)
    script = f"""#!/bin/bash
echo "$(basename "$0") $*" >> "{tmp_path}/calls"
case "$(basename "$0") $*" in
  "scontrol --json"*) echo "scontrol: unrecognized option '--json'" >&2; exit 1;;
  "scontrol --oneliner show node "*ghost7*) echo "Node ghost7 not found"; cat "{tmp_path}/text"; exit 1;;
  "scontrol --oneliner show node "*) cat "{tmp_path}/text";;
  "sinfo --json") cat "{SAMPLES / 'sinfo-22.05-text.json'}";;
esac
"""
    for name in ("scontrol", "sinfo"):
        (tmp_path / name).write_text(script)
        (tmp_path / name).chmod(0o755)
    return tmp_path


def _calls(bin_dir: Path) -> list[str]:
    return (bin_dir / "calls").read_text().splitlines()


def test_a_hook_on_2205_reads_only_the_nodes_of_its_call(slurm_2205):
    slurm = CommandSlurm(str(slurm_2205))
    assert slurm.node_facts(["elastic1", "elastic2"]) == {n: BY_JSON[n] for n in ("elastic1", "elastic2")}
    assert slurm.node_facts(["elastic5"]) == {"elastic5": BY_JSON["elastic5"]}
    assert _calls(slurm_2205) == ["scontrol --json show node elastic[1-2]",  # learns the version
                                  "scontrol --oneliner show node elastic[1-2]",
                                  "scontrol --oneliner show node elastic5"]


@pytest.mark.parametrize("nodes", [["elastic1", "elastic3"], ["elastic1", "ghost7"]])
def test_text_it_cannot_trust_or_an_unknown_name_falls_back_to_the_json(slurm_2205, nodes):
    facts = CommandSlurm(str(slurm_2205)).node_facts(nodes)
    assert facts == {n: BY_JSON[n] for n in nodes if n in BY_JSON}
    assert facts["elastic1"].cpus == 1 and _calls(slurm_2205)[-1] == "sinfo --json"


def test_the_daemon_on_2205_keeps_reading_the_json(slurm_2205):
    # It reads every node each tick: one sinfo --json, cheaper than text for the whole cluster.
    facts = CommandSlurm(str(slurm_2205), reread=60).node_facts(["elastic1"])
    assert facts == {"elastic1": BY_JSON["elastic1"]}
    assert not any("--oneliner" in call for call in _calls(slurm_2205))


def test_the_version_a_text_read_does_not_say_is_asked_of_scontrol(tmp_path):
    # `render --check` compares the controller's version with each nodeset's slurmd image.
    (tmp_path / "scontrol").write_text('#!/bin/bash\n[ "$1" = --version ] && echo "slurm-wlm 22.05.8"\n')
    (tmp_path / "scontrol").chmod(0o755)
    assert str(CommandSlurm(str(tmp_path)).learn_version()) == "22.05.8"
