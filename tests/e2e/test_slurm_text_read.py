"""Slurm 22.05 has no ``scontrol --json`` and its ``sinfo --json`` reads the whole cluster, so a
hook on 22.05 reads the nodes of its call from ``scontrol --oneliner show node NODES`` text,
strictly (bridge/slurm.py: nodes_from_text). Here, against the real slurmctld 22.05, that read
must give exactly the facts Slurm's own JSON gives, in every state a job takes its nodes through,
and must step aside (to the JSON) wherever a value could be misread."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from bridge.slurm import CommandSlurm, node_from_json, nodes_from_text
from tests.e2e.conftest import sbatch, wait_for
from testenv.slurm import NodeGroup

NODES = ["elastic1", "elastic2", "gpu1"]


@pytest.fixture
def slurm_env(make_env, monkeypatch):
    env = make_env(node_groups=(NodeGroup(prefix="elastic", count=2, cpus=1, real_memory=500),
                                NodeGroup(prefix="gpu", count=1, cpus=1, real_memory=500, gres="gpu:1")))
    monkeypatch.setenv("SLURM_CONF", str(env.slurm.conf_path))
    return env


def _text() -> str:
    return subprocess.run(["/usr/bin/scontrol", "--oneliner", "show", "node", ",".join(NODES)],
                          capture_output=True, text=True, check=True, env=os.environ).stdout


def _agreed() -> tuple[str, dict]:
    """The text and the JSON of one moment: the text read before and after the JSON is the same."""
    for _ in range(20):
        before = _text()
        nodes = json.loads(subprocess.run(["/usr/bin/sinfo", "--json"], capture_output=True, text=True,
                                          check=True).stdout)["nodes"]
        if _text() == before:
            return before, {n["name"]: node_from_json(n) for n in nodes if n["name"] in NODES}
    raise AssertionError("Slurm's node states never held still for two reads")


def _states(facts: dict) -> dict[str, str]:
    return {name: "+".join(f.state) for name, f in sorted(facts.items())}


def test_text_read_gives_the_json_facts_in_every_state_of_a_job(slurm_env):
    env = slurm_env
    seen: set[tuple[str, ...]] = set()

    def same_facts() -> dict:
        text, by_json = _agreed()
        by_text = nodes_from_text(text, set(NODES))
        assert by_text is not None, text  # the text read was taken, not the fallback
        assert by_text == by_json
        seen.add(tuple(_states(by_text).values()))
        return by_text

    same_facts()  # powered down
    job = sbatch(env, "-N2", "-w", "elastic[1-2]", "--wrap", "sleep 600")
    # Read all the way (powering up lasts under a second here: it is seen when it is seen).
    wait_for(lambda: same_facts() and env.slurm.job_state(job) == "RUNNING", timeout=60, what="job running")
    running = same_facts()
    assert running["elastic1"].state[0] in ("ALLOCATED", "MIXED")
    env.slurm.run("scancel", job)
    wait_for(lambda: {"POWERING_DOWN", "POWERED_DOWN"} & set(same_facts()["elastic1"].state), timeout=60,
             what="powering down")
    CommandSlurm().set_down(["elastic2"], "pod elastic2: ErrImagePull")
    down = same_facts()
    assert down["elastic2"].reason == "slurm-k8s-bridge: pod elastic2: ErrImagePull"
    assert down["gpu1"].gres == ("gpu:1",)
    assert len(seen) >= 4, seen  # powered down, running, powering down or idle, down
    # A hook's own read, as it runs; a name Slurm does not know is left out, as from the JSON.
    assert CommandSlurm().node_facts(NODES) == _agreed()[1]
    assert list(CommandSlurm().node_facts(["elastic1", "ghost7"])) == ["elastic1"]


@pytest.mark.parametrize("update", [
    ("AvailableFeatures=fast CPUTot=64 RealMemory=99999", "ActiveFeatures=fast CPUTot=64 RealMemory=99999"),
    ("AvailableFeatures=x\nNodeName=elastic2 CPUTot=99", "ActiveFeatures=x\nNodeName=elastic2 CPUTot=99"),
    ("AvailableFeatures=fast Zed=1", "ActiveFeatures=fast Zed=1"),
    ("Comment=hello Gres=gpu:9",),
    ("State=DRAIN", "Reason=maintenance Comment=x [a@2026-01-01T00:00:00]"),
], ids=["keys-in-feature", "newline-in-feature", "unknown-key-in-feature", "comment", "comment-in-reason"])
def test_values_that_text_could_misread_send_the_read_to_the_json(slurm_env, update):
    slurm_env.slurm.run("scontrol", "update", "NodeName=elastic1", *update)
    text, by_json = _agreed()
    assert nodes_from_text(text, set(NODES)) is None, text
    if "\n" not in update[0]:  # a newline's second line claims another node: nothing is read
        assert nodes_from_text(text, {"elastic2", "gpu1"}) is not None  # the other nodes' lines still read
    assert CommandSlurm().node_facts(NODES) == by_json
    assert CommandSlurm().node_facts(["elastic2"])["elastic2"].cpus == 1
