"""Input a site or a user can put into Slurm, end to end through real slurmctld: it must not
change any pod, and a mistake must be one line the admin can act on."""

from __future__ import annotations

import json

from testenv import site
from testenv.slurm import NodeGroup
from tests.e2e.conftest import bridge_pods, run_hook, wait_for
from tests.e2e.test_researchers import alice_run, sbatch_as  # noqa: F401 (alice_run is a fixture)


def test_features_that_look_like_slurm_fields_change_no_pod(make_env, alice_run):
    """`scontrol -o show node` printed these features unquoted: split on `Key=`, elastic1's pod
    asked for 64 CPUs and elastic2's feature rewrote elastic1's facts."""
    env = make_env(node_groups=(NodeGroup(prefix="elastic", count=2, cpus=2, real_memory=500),))
    for node, feature in (("elastic1", "fast CPUTot=64 RealMemory=99999"),
                          ("elastic2", "x\nNodeName=elastic1 CPUTot=99 RealMemory=1")):
        env.slurm.run("scontrol", "update", f"NodeName={node}", f"AvailableFeatures={feature}",
                      f"ActiveFeatures={feature}")
    job = sbatch_as(env, site.ALICE, alice_run, "-N2", "--wrap", "srun hostname")
    pods = wait_for(lambda: len(p := bridge_pods(env)) == 2 and p, timeout=30, what="both pods")
    limits = {node: pod.spec.containers[0].resources.limits for node, pod in pods.items()}
    assert {node: limit["cpu"] for node, limit in limits.items()} == {"elastic1": "2", "elastic2": "2"}
    assert all("99999" not in limit["memory"] and limit["memory"] != "1Mi" for limit in limits.values()), limits
    wait_for(lambda: env.slurm.job_state(job) == "COMPLETED", timeout=60, what="job completed")
    output = (alice_run / f"slurm-{job}.out").read_text()
    assert sorted(output.split()) == ["elastic1", "elastic2"]


def test_a_node_slurm_does_not_know_is_named_in_one_line(env):
    long_name = "g" * 10_000
    for node in ("ghost7", "nœud-ü", long_name):
        done = run_hook(env, "slurm-k8s-resume", node)
        assert done.returncode == 68, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("slurm-k8s-resume: partial: all 1 of 1 node(s) failed: ")
        assert line.endswith("Slurm does not know this node") and len(line) < 300
        assert (node if len(node) < 60 else "(10000 characters)") in line
    records = [r for r in env.bridge_log_records() if r.get("event") == "hook failed"]
    assert [r["exit_code"] for r in records] == [68, 68, 68]
    assert not bridge_pods(env)


def test_a_hostlist_slurm_would_not_write_is_refused_before_anything_is_touched(env):
    for expression in ("elastic[1-4],@all", "elastic1|elastic2", "elastic1 elastic2"):
        done = run_hook(env, "slurm-k8s-resume", expression)
        assert done.returncode == 64
        assert done.stderr.startswith("slurm-k8s-resume: usage: malformed hostlist") and done.stderr.count("\n") == 1
    states = {n["name"]: n["state_flags"] for n in json.loads(env.slurm.run("sinfo", "--json").stdout)["nodes"]}
    assert all("POWERED_DOWN" in flags and "DRAIN" not in flags for flags in states.values()), states
    assert not bridge_pods(env)
