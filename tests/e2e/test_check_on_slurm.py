"""`slurm-k8s-bridge check` on the slurmctld host of the test environment: slurm.conf as the
running slurmctld states it, the hooks as SlurmUser (slurm) runs them, from the install the
README describes."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from testenv.env import BIN, Environment


def run_check(env: Environment) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "slurm-k8s-bridge"), "--config", str(env.bridge_config_path), "check"],
                          env={"SLURM_CONF": str(env.slurm.conf_path)}, capture_output=True, text=True, timeout=60)


def findings(result: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in result.stdout.splitlines()[:-1]:
        status, rest = line.split(None, 1)
        topic = rest.split(":", 1)[0]
        found.setdefault(topic, []).append(line)
    return found


def test_check_passes_what_the_environment_sets_up_as_the_readme_says(env):
    result = run_check(env)
    found = findings(result)
    statuses = {topic: {line.split()[0] for line in lines} for topic, lines in found.items()}
    python = Path("/usr/bin/python3").resolve()
    for hook in ("ResumeProgram", "SuspendProgram", "ResumeFailProgram", "PrologSlurmctld"):
        assert found[hook] == [f"OK   {hook}: {_hook_path(env, hook)} runs as slurm "
                               f"(interpreter {python})"]
    for topic in ("config", "config file", "kubernetes", "cgroups", "kubeconfig", "log.file", "resume.state_dir", "package", "templates",
                  "nodeset elastic", "JobSubmitPlugins", "CliFilterPlugins"):
        assert statuses[topic] == {"OK"}, found[topic]
    assert "valid for Kubernetes 1.27, 1.37 (QoS Guaranteed)" in found["nodeset elastic"][0]
    # What the one-machine environment does that a site must not: pods on this host reach a
    # loopback slurmctld and see its private munge socket; a 2 s SuspendTimeout keeps tests short.
    assert statuses["SlurmctldHost"] == statuses["slurm.conf_server"] == statuses["SuspendTimeout"] == {"WARN"}
    assert [t for t, s in statuses.items() if "FAIL" in s] == ["AuthInfo"]
    assert result.returncode == 78 and result.stdout.splitlines()[-1] == "1 problem(s) found"


def _hook_path(env: Environment, key: str) -> str:
    out = env.slurm.run("scontrol", "show", "config").stdout
    return next(line.split("=", 1)[1].strip() for line in out.splitlines() if line.startswith(f"{key} "))


def test_check_catches_a_resume_program_whose_python_slurm_user_cannot_reach(env):
    # A venv made by a Python under a directory SlurmUser cannot enter (e.g. pyenv's under /root).
    home = Path(tempfile.mkdtemp(prefix="bridge-root-home-", dir="/tmp"))  # 0700, like /root
    venv = Path(tempfile.mkdtemp(prefix="bridge-venv-", dir="/tmp"))
    try:
        venv.chmod(0o755)
        (home / "python3").symlink_to(Path("/usr/bin/python3").resolve())
        (venv / "python").symlink_to(home / "python3")
        hook = venv / "slurm-k8s-resume"
        hook.write_text(f"#!{venv / 'python'}\nfrom bridge.hooks import resume_main\nresume_main()\n")
        hook.chmod(0o755)
        conf = env.slurm.conf_path
        conf.write_text("\n".join(f"ResumeProgram={hook}" if line.startswith("ResumeProgram=") else line
                                  for line in conf.read_text().splitlines()) + "\n")
        env.slurm.run("scontrol", "reconfigure")

        found = findings(run_check(env))
        assert found["ResumeProgram"] == [
            f"FAIL ResumeProgram: {hook}: its interpreter {venv / 'python'}: slurm cannot enter {home} "
            f"(mode drwx------, owner root:root); slurmctld runs it as slurm and it would exit 126, "
            f"so every job waits ResumeTimeout"]
        # What slurmctld would get: the kernel refuses the interpreter (126 as a shell says it).
        ran = subprocess.run(["runuser", "-u", "slurm", "--", "/bin/sh", "-c", 'exec "$0" elastic1', str(hook)],
                             capture_output=True, text=True)
        assert ran.returncode == 126 and "Permission denied" in ran.stderr
    finally:
        shutil.rmtree(home)
        shutil.rmtree(venv)


def test_a_batch_job_starts_as_its_nodes_register_though_slurm_conf_is_not_in_etc(env):
    """slurmctld gives PrologSlurmctld no SLURM_CONF, and this environment's slurm.conf is in a
    temporary directory with no wrapper around the prolog: the prolog takes the path from
    slurmctld's own -f. Had it not found it, it would exit at once and the job would stay
    CONFIGURING until slurmctld's periodic pass (every 30 s in 22.05)."""
    from tests.e2e.conftest import sbatch, wait_for

    job = sbatch(env, "-N2", "--wrap", "sleep 1")
    wait_for(lambda: all(not set(env.slurm.node_states().get(n, "~")) & set("~#%")
                         for n in ("elastic1", "elastic2")), timeout=60, what="nodes registered")
    wait_for(lambda: env.slurm.job_state(job) in ("RUNNING", "COMPLETED"), timeout=10,
             what="the job running within 10 s of its nodes (not at the 30 s pass)")


def test_check_reads_the_config_the_hooks_read(env):
    """The hooks get only SLURM_CONF, so they read k8s-bridge.yaml beside slurm.conf: that is
    the file check reads when the admin's shell names none."""
    result = subprocess.run([str(BIN / "slurm-k8s-bridge"), "check"], env={"SLURM_CONF": str(env.slurm.conf_path)},
                            capture_output=True, text=True, timeout=60)
    assert findings(result)["config"] == [f"OK   config: {env.bridge_config_path} loads (1 nodeset(s))"]


def test_the_hooks_run_as_slurm_user_and_keep_their_state_where_he_may_write(env):
    """What a hook writes belongs to SlurmUser: here the remembered cause of a DOWN node (a
    refused pod), which the resume hook writes into resume.state_dir."""
    import pwd

    from tests.e2e.conftest import node_field, sbatch, wait_for

    env.add_fault(verb="create", resource="pods", name="testenv-elastic1", code=403, reason="Forbidden",
                  message='pods "testenv-elastic1" is forbidden: admission webhook "policy.example" denied the request')
    sbatch(env, "-N1", "--wrap", "hostname")
    wait_for(lambda: node_field(env, "elastic1", "Reason").startswith("slurm-k8s-bridge:"), timeout=30,
             what="elastic1 DOWN with the bridge's reason")
    state_dir = Path(yaml_load(env.bridge_config_path)["resume"]["state_dir"])
    remembered = state_dir / "down-reasons" / "elastic1"
    assert "forbidden" in remembered.read_text()
    assert pwd.getpwuid(remembered.stat().st_uid).pw_name == "slurm"


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_check_catches_a_verb_the_role_does_not_grant(make_env, tmp_path):
    """A Role without `delete` on pods: every suspend would be refused with 403 (pods left
    running); check says so before any job, from the API server's own answer."""
    import yaml

    rbac = tmp_path / "rbac"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rbac", rbac)
    role = yaml.safe_load((rbac / "role.yaml").read_text())
    role["rules"][0]["verbs"].remove("delete")
    (rbac / "role.yaml").write_text(yaml.safe_dump(role))
    env = make_env(rbac=rbac)
    result = run_check(env)
    assert findings(result)["kubernetes"] == [
        "FAIL kubernetes: the bridge's identity may not delete pods in namespace slurm: the API would refuse it "
        "(403) when a job needs it; apply rbac/"]
    assert result.returncode == 78


def test_check_warns_until_the_warm_pools_partition_stops_slurm_suspending_its_nodes(make_env):
    """The pool holds idle nodes longer than any SuspendTime; Slurm would power them down and
    the pool boot them again. check reads the global and the partitions' SuspendTime as the
    running slurmctld states them, and is quiet once the partition says INFINITE."""
    import re

    from bridge.check import parse_show_config
    from tests.e2e.conftest import wait_for
    from testenv.env import IMAGE

    env = make_env(nodesets=[{"name": "elastic", "nodes": "elastic[1-4]", "image": IMAGE, "warm": {"max": 2}}])
    suspend_time = parse_show_config(env.slurm.run("scontrol", "show", "config").stdout)["SuspendTime"].split()[0]
    assert findings(run_check(env))["SuspendTime"] == [
        f"WARN SuspendTime: {suspend_time} s for warm pool elastic's nodes: Slurm powers down the idle nodes the "
        f"pool holds, and the pool powers them up again; set SuspendTime=INFINITE on their partition "
        f"(README \"Warm pool\")"]
    conf = env.slurm.conf_path
    conf.write_text(re.sub(r"^(PartitionName=elastic .*)$", r"\1 SuspendTime=INFINITE", conf.read_text(), flags=re.M))
    env.slurm.run("scontrol", "reconfigure")
    wait_for(lambda: "SuspendTime=INFINITE" in env.slurm.run("scontrol", "--oneliner", "show", "partition").stdout,
             timeout=30, what="slurmctld reading the partition's SuspendTime")
    assert "SuspendTime" not in findings(run_check(env))


def test_check_warns_while_a_shared_pools_spot_nodes_weigh_no_less_than_its_on_demand_nodes(make_env):
    """Slurm gives a job the idle node of lowest Weight: with the slurm.conf line's one Weight,
    jobs take on-demand nodes while the spot nodes the pool keeps warm idle. check reads the
    weights slurmctld holds now (scontrol update changes them without a restart)."""
    from testenv.env import IMAGE

    env = make_env(nodesets=[
        {"name": "spot", "nodes": "elastic[1-2]", "image": IMAGE, "capacity": {"type": "spot"},
         "warm": {"max": 1, "pool": "elastic"}},
        {"name": "ondemand", "nodes": "elastic[3-4]", "image": IMAGE, "capacity": {"type": "on-demand"},
         "warm": {"max": 1, "pool": "elastic"}}])
    [warning] = findings(run_check(env))["Weight"]
    assert warning.startswith("WARN Weight: warm pool elastic: spot node elastic2 has Weight=1, not below on-demand "
                              "node elastic3 (Weight=1)")
    env.slurm.run("scontrol", "update", "NodeName=elastic[3-4]", "Weight=10")
    assert "Weight" not in findings(run_check(env))
