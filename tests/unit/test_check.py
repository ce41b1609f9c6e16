"""`slurm-k8s-bridge check`: each finding an admin would otherwise learn from a job that never
started. The end-to-end test (tests/e2e/test_check.py) runs it against real Slurm."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from bridge import check, config as config_module
from bridge.check import Account
from bridge.errors import BridgeError
from bridge.slurm import NodeFacts

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "scontrol-show-config-22.05.txt"
SLURM = Account("slurm", 4242, frozenset({4242}))
"""SlurmUser, as uid/gid numbers no file here belongs to: only the "other" bits let him in."""


@pytest.fixture
def open_dir():
    """A directory everyone may enter (pytest's tmp_path lies under a 0700 one)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="bridge-check-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def settings():
    return check.parse_show_config(SAMPLE.read_text())


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "k8s-bridge.yaml"
    path.write_text(textwrap.dedent("""
        slurm: {conf_server: "ctl:6817"}
        resume: {deadline: 100}
        nodesets: [{name: cpu, nodes: "elastic[1-4]", image: "i"}, {name: gpu, nodes: "gpu[1-2]", image: "i"}]
        """))
    return config_module.load(str(path))


def statuses(findings, topic):
    return [(f.status, f.message) for f in findings if f.topic == topic]


def test_show_config_is_read_as_slurmctld_states_it(settings):
    assert settings["SlurmUser"] == "slurm(64030)"
    assert check.slurm_user(settings) == "slurm"
    assert settings["SlurmctldHost[0]"] == "vm(localhost)"
    assert settings["ResumeTimeout"] == "120 sec"
    assert settings["SLURM_VERSION"] == "22.05.8"


def test_a_venv_whose_python_lies_in_a_directory_slurm_user_cannot_enter_fails(open_dir):
    tmp_path = open_dir
    # The exit 126: python3 -m venv from a Python under /root (0700).
    private = tmp_path / "root-home"
    (private / "bin").mkdir(parents=True)
    python = private / "bin" / "python3.11"
    python.write_text("")
    python.chmod(0o755)
    private.chmod(0o700)
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python3").symlink_to(python)
    (venv / "python").symlink_to("python3")
    hook = venv / "slurm-k8s-resume"
    hook.write_text(f"#!{venv / 'python'}\nfrom bridge.hooks import resume_main\n")
    hook.chmod(0o755)

    [finding] = check.program_findings("ResumeProgram", str(hook), SLURM)
    assert finding.status == "FAIL"
    assert f"its interpreter {venv / 'python'}: slurm cannot enter {private} (mode drwx------" in finding.message
    assert "exit 126" in finding.message

    private.chmod(0o755)  # what the README says: a Python SlurmUser can reach
    [finding] = check.program_findings("ResumeProgram", str(hook), SLURM)
    assert finding.status == "OK"
    assert finding.message == f"{hook} runs as slurm (interpreter {python})"


def test_a_hook_slurm_user_may_not_execute_or_that_is_missing_fails(open_dir):
    tmp_path = open_dir
    hook = tmp_path / "slurm-k8s-resume"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o700)
    assert "slurm cannot read+execute" in check.program_findings("ResumeProgram", str(hook), SLURM)[0].message
    missing = check.program_findings("SuspendProgram", str(tmp_path / "nope"), SLURM)[0]
    assert missing.status == "FAIL" and f"{tmp_path / 'nope'} does not exist" in missing.message
    hook.write_text("#!/usr/bin/env python3\n")  # pip never writes this; a hand-made hook might
    hook.chmod(0o755)
    by_path = check.program_findings("ResumeProgram", str(hook), SLURM)[0]
    assert by_path.status == "FAIL" and "no PATH" in by_path.message


def test_unset_hooks_fail_except_the_prolog_which_only_slows_batch_jobs(settings):
    unset = {k: v for k, v in settings.items() if k not in check.HOOK_KEYS}
    found = {f.topic: f.status for f in check.hook_findings(unset, SLURM)}
    assert found == {"ResumeProgram": "FAIL", "SuspendProgram": "FAIL", "ResumeFailProgram": "FAIL",
                     "PrologSlurmctld": "WARN"}


def test_slurmctld_host_must_resolve_and_loopback_only_suits_pods_on_this_host():
    def resolve(host):
        if host == "nowhere":
            raise OSError("Name or service not known")
        return {"localhost": ["127.0.0.1"], "ctl": ["10.0.0.5"]}[host]

    [unresolved] = check.controller_findings({"SlurmctldHost[0]": "nowhere"}, resolve)
    [loopback] = check.controller_findings({"SlurmctldHost[0]": "vm(localhost)"}, resolve)
    [good] = check.controller_findings({"SlurmctldHost[0]": "vm(ctl)"}, resolve)
    assert unresolved.status == "FAIL" and "no node would come up" in unresolved.message
    assert loopback.status == "WARN" and "only pods on this host can register" in loopback.message
    assert good == check.Finding("OK", "SlurmctldHost", "vm(ctl) (10.0.0.5)")


def test_the_conf_server_pods_fetch_slurm_conf_from_must_resolve(config):
    import msgspec

    def resolve(host):
        if host == "nowhere":
            raise OSError("Name or service not known")
        return {"ctl": ["10.0.0.5"], "127.0.0.1": ["127.0.0.1"]}[host]

    def at(server):
        return msgspec.structs.replace(config, slurm=msgspec.structs.replace(config.slurm, conf_server=server))

    assert check.conf_server_findings(config, resolve)[0].status == "OK"  # ctl:6817
    assert check.conf_server_findings(at("nowhere:6817"), resolve)[0].status == "FAIL"
    assert check.conf_server_findings(at("127.0.0.1:6817"), resolve)[0].status == "WARN"


def test_a_munge_socket_other_than_the_default_fails(settings):
    [moved] = check.munge_findings(settings)  # the test environment's own: a known deviation
    assert moved.status == "FAIL" and "/run/munge/munge.socket.2" in moved.message
    assert check.munge_findings({"AuthInfo": "(null)"})[0].status == "OK"
    assert check.munge_findings({"AuthInfo": "cred_expire=120"})[0].status == "OK"


CGROUP_PLUGINS = {"ProctrackType": "proctrack/cgroup", "TaskPlugin": "task/affinity,task/cgroup"}
LINUXPROC = {"ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/affinity"}


def with_cgroups(config, *names):
    return msgspec.structs.replace(config, nodesets=[msgspec.structs.replace(n, cgroups=n.name in names)
                                                     for n in config.nodesets])


def test_cgroup_plugins_fail_for_each_nodeset_without_cgroups(config):
    assert check.cgroup_findings(LINUXPROC, config)[0].status == "OK"
    [finding] = check.cgroup_findings(CGROUP_PLUGINS, with_cgroups(config, "cpu"))
    assert finding.status == "FAIL"
    assert finding.message.startswith("ProctrackType=proctrack/cgroup and TaskPlugin=task/cgroup: slurmd in the pods "
                                      "of nodeset(s) gpu cannot use it")
    assert "COMPLETED 0:0" in finding.message and "Set cgroups: true on the nodeset" in finding.message
    [unknown] = check.cgroup_findings({"ProctrackType": "proctrack/cgroup"}, None)  # config did not load
    assert unknown.status == "FAIL" and "slurmd in the pods cannot use it" in unknown.message


def test_cgroup_plugins_pass_when_every_nodeset_sets_cgroups(config):
    [finding] = check.cgroup_findings(CGROUP_PLUGINS, with_cgroups(config, "cpu", "gpu"))
    assert finding.status == "OK" and "every nodeset sets cgroups: true" in finding.message


def test_cgroups_without_the_plugins_warn_of_privileged_pods_for_nothing(config):
    [finding] = check.cgroup_findings(LINUXPROC, with_cgroups(config, "gpu"))
    assert finding.status == "WARN"
    assert "nodeset(s) gpu set cgroups: true, which makes their pods privileged" in finding.message


def test_power_saving_settings_must_agree_with_the_bridge_config(settings, config):
    [quick] = check.power_saving_findings(settings, config)  # the test environment's 2 s
    assert quick.status == "WARN" and quick.topic == "SuspendTimeout" and "(30 s)" in quick.message
    settings = {**settings, "SuspendTimeout": "60 sec"}
    assert [f.status for f in check.power_saving_findings(settings, config)] == ["OK"]
    short = {**settings, "ResumeTimeout": "90 sec", "SlurmctldParameters": "cloud_reg_addrs", "PrivateData": "none"}
    found = {(f.topic, f.status, f.message.split(":")[0]) for f in check.power_saving_findings(short, config)}
    assert found == {("SlurmctldParameters", "FAIL", "lacks enable_configless"),
                     ("SlurmctldParameters", "WARN", "lacks idle_on_node_suspend"),
                     ("SlurmctldParameters", "WARN", "lacks power_save_interval"),
                     ("PrivateData", "WARN", "lacks cloud"),
                     ("ResumeTimeout", "FAIL", "90 s is not above resume.deadline (100 s)")}
    # cloud_reg_addrs became Slurm's behaviour in 23.11, which refuses the parameter
    newer = {**settings, "SLURM_VERSION": "24.11.5", "SlurmctldParameters": "enable_configless,idle_on_node_suspend,"
                                                                             "power_save_interval=1"}
    assert [f.status for f in check.power_saving_findings(newer, config)] == ["OK"]
    defunct = {**newer, "SLURM_VERSION": "26.05.5", "SlurmctldParameters": newer["SlurmctldParameters"] + ",cloud_reg_addrs"}
    warns = check.power_saving_findings(defunct, config)
    assert [(w.status, w.topic) for w in warns] == [("WARN", "SlurmctldParameters"), ("WARN", "SchedulerParameters")]
    assert "cloud_reg_addrs is gone" in warns[0].message and "requeue_on_resume_failure" in warns[1].message
    # 25.05+ requeues a job whose nodes fail to resume only when asked to
    requeues = {**defunct, "SlurmctldParameters": newer["SlurmctldParameters"],
                "SchedulerParameters": "bf_continue,requeue_on_resume_failure"}
    assert [f.status for f in check.power_saving_findings(requeues, config)] == ["OK"]


def test_a_nodeset_image_slurmctld_cannot_accept_fails_before_any_job(settings, config):
    import msgspec

    ok = check.skew_findings({**settings, "SLURM_VERSION": "24.11.5"}, config)
    assert [f.status for f in ok] == ["OK"]
    newer = msgspec.structs.replace(config.nodesets[0], image="registry.example.org/slurmd:26.05.5")
    ancient = msgspec.structs.replace(config.nodesets[0], name="old", image="registry.example.org/slurmd:22.05.8")
    config = msgspec.structs.replace(config, nodesets=[newer, ancient])
    found = check.skew_findings({**settings, "SLURM_VERSION": "24.11.5"}, config)
    assert [(f.status, f.topic) for f in found] == [("FAIL", f"nodeset {newer.name}"), ("FAIL", "nodeset old")]
    assert "newer than slurmctld" in found[0].message


def test_pod_memory_must_leave_room_for_slurmd_and_munged(config):
    cpu = config.nodesets[0]
    facts = NodeFacts("elastic1", cpus=4, real_memory_mb=64000)
    [ok] = check.memory_findings(cpu, facts, "nodeset cpu")
    assert ok == check.Finding("OK", "nodeset cpu", "pod memory 64128 MiB = RealMemory 64000 + memory_overhead_mb 128")
    import msgspec

    tight = msgspec.structs.replace(cpu, memory_overhead_mb=0)
    [warn] = check.memory_findings(tight, facts, "nodeset cpu")
    assert warn.status == "WARN" and "OOM-kills" in warn.message
    assert check.memory_findings(cpu, NodeFacts("elastic1", cpus=4, real_memory_mb=1), "x")[0].status == "WARN"


def test_a_template_that_replaces_the_images_entrypoint_is_warned_of(config):
    """tini, the image's PID 1, is what lets a pod deleted while slurmd starts stop at once."""
    from bridge.render import render_pod

    shipped = render_pod(config, NodeFacts("elastic1", cpus=4, real_memory_mb=4000)).manifest
    assert check.entrypoint_findings(shipped, "nodeset cpu") == []
    pod = {"spec": {"containers": [{"name": "slurmd", "image": "i", "args": ["-b"]}]}}
    pod["spec"]["containers"][0]["command"] = ["/usr/sbin/slurmd", "-D"]
    [warn] = check.entrypoint_findings(pod, "nodeset cpu")
    assert warn.status == "WARN" and warn.topic == "nodeset cpu"
    assert warn.message.startswith("container slurmd sets command ['/usr/sbin/slurmd', '-D']: it replaces the "
                                   "image's entrypoint (tini")


def test_files_the_hooks_read_and_write_as_slurm_user(open_dir):
    tmp_path = open_dir
    config_file = tmp_path / "k8s-bridge.yaml"
    config_file.write_text('slurm: {conf_server: "ctl:6817"}\nnodesets: [{name: a, nodes: "n[1-2]", image: "i"}]\n')
    config = config_module.load(str(config_file))
    config_file.chmod(0o600)  # root only: every hook would fail to load it
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    found = check.file_findings(msgspec_replace(config, state), SLURM)
    assert statuses(found, "config file")[0][0] == "FAIL"
    assert statuses(found, "resume.state_dir")[0] == (
        "FAIL", f"slurm cannot write+execute {state} (mode drwxr-xr-x, owner root:root): "
                "the bridge keeps the reasons of DOWN nodes there")
    config_file.chmod(0o644)
    state.chmod(0o777)
    found = check.file_findings(msgspec_replace(config, state), SLURM)
    assert statuses(found, "config file")[0][0] == "OK" and statuses(found, "resume.state_dir")[0][0] == "OK"


def msgspec_replace(config, state):
    import msgspec

    return msgspec.structs.replace(config, resume=msgspec.structs.replace(config.resume, state_dir=str(state)),
                                   log=msgspec.structs.replace(config.log, file=None))


def test_render_check_without_the_check_extra_says_what_to_install(tmp_path):
    # kubernetes_validate hidden as if the [check] extra were not installed
    config_file = tmp_path / "k8s-bridge.yaml"
    config_file.write_text('slurm: {conf_server: "ctl:6817"}\nnodesets: [{name: a, nodes: "n[1-2]", image: "i"}]\n')
    code = ("import sys; sys.modules['kubernetes_validate'] = None; from bridge.cli import main; "
            f"sys.argv = ['slurm-k8s-bridge', '--config', {str(config_file)!r}, 'render', 'n1', '--check']; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 69
    assert result.stderr == ("slurm-k8s-bridge: install: checking pods needs Kubernetes' schemas: "
                             "pip install 'slurm-k8s-bridge[check]'\n")
    assert result.stdout == ""


def test_the_verbs_checked_are_what_the_role_grants(tmp_path):
    """rbac/role.yaml grants exactly what the bridge calls (test_rbac.py); check asks for the
    same, so a Role an admin trimmed or an old one fails check before a job needs it."""
    import yaml

    path = tmp_path / "k8s-bridge.yaml"
    path.write_text('slurm: {conf_server: "ctl:6817"}\ndaemon: {in_cluster: true}\nnodesets: [\n'
                    '  {name: a, nodes: "a[1-2]", image: "i", gang: {kind: volcano}},\n'
                    '  {name: b, nodes: "b[1-2]", image: "i", gang: {kind: coscheduling}},\n'
                    '  {name: c, nodes: "c[1-2]", image: "i", gang: {kind: kueue, queue: q}}]\n')
    role = yaml.safe_load((Path(__file__).resolve().parents[2] / "rbac" / "role.yaml").read_text())
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert set(check.needed_verbs(config_module.load(str(path)))) == granted


def test_a_verb_the_identity_lacks_fails_with_what_to_apply(config):
    asked = []

    def allowed(group, resource, verb, namespace):
        asked.append((group, resource, verb, namespace))
        return (resource, verb) != ("pods", "delete")

    [finding] = check.access_findings(config, allowed)
    assert finding == check.Finding("FAIL", "kubernetes", "the bridge's identity may not delete pods in namespace "
                                                          "slurm: the API would refuse it (403) when a job needs it; "
                                                          "apply rbac/")
    assert {a[3] for a in asked} == {"slurm"}
    assert check.access_findings(config, lambda *a: True)[0].status == "OK"


PARTITIONS = """\
PartitionName=spot AllowGroups=ALL Default=YES Nodes=s[1-4] State=UP SuspendTimeout=GLOBAL SuspendTime={spot}
PartitionName=od AllowGroups=ALL Default=NO Nodes=o[1-4] State=UP SuspendTimeout=GLOBAL SuspendTime={od}
PartitionName=all AllowGroups=ALL Default=NO Nodes=s[1-4],o[1-4],gpu[1-2] State=UP
"""


def test_a_warm_pool_whose_nodes_slurm_suspends_is_warned_of(settings, tmp_path):
    """Slurm powers down idle nodes after SuspendTime, those the pool holds too: the pool's nodes
    need SuspendTime=INFINITE, from a partition (the highest of a node's partitions wins) or
    the global setting."""
    path = tmp_path / "pool.yaml"
    path.write_text(textwrap.dedent("""
        slurm: {conf_server: "ctl:6817"}
        resume: {deadline: 100}
        nodesets:
          - {name: cpu-spot, nodes: "s[1-4]", image: i, capacity: {type: spot}, warm: {max: 2, pool: cpu}}
          - {name: cpu-od, nodes: "o[1-4]", image: i, warm: {max: 2, pool: cpu}}
          - {name: gpu, nodes: "gpu[1-2]", image: i}
        """))
    config = config_module.load(str(path))
    settings = {**settings, "SuspendTimeout": "60 sec", "SuspendTime": "300 sec"}  # (the sample's 2 s would warn)

    def warnings(spot: str, od: str, suspend_time: str = "300 sec") -> list[tuple[str, str]]:
        partitions = check.parse_partitions(PARTITIONS.format(spot=spot, od=od))
        return [(f.topic, f.message.split(":")[0]) for f in check.power_saving_findings(
            {**settings, "SuspendTime": suspend_time}, config, partitions) if f.status != "OK"]

    assert warnings("INFINITE", "INFINITE") == []
    assert warnings("INFINITE", "GLOBAL") == [("SuspendTime", "300 s for warm pool cpu's nodes")]
    assert warnings("7200", "INFINITE") == [("SuspendTime", "7200 s for warm pool cpu's nodes")]
    assert warnings("GLOBAL", "GLOBAL", "NONE") == []  # power saving off
    # Slurm's own exclusions: a partition, or nodes (all of them; <nodes>:N keeps only N up).
    settings["SuspendExcParts"] = "od"
    assert warnings("INFINITE", "GLOBAL") == []
    settings["SuspendExcParts"], settings["SuspendExcNodes"] = "(null)", "o[1-4]"
    assert warnings("INFINITE", "GLOBAL") == []
    settings["SuspendExcNodes"] = "o[1-4]:2"
    assert warnings("INFINITE", "GLOBAL") == [("SuspendTime", "300 s for warm pool cpu's nodes")]
    del settings["SuspendExcNodes"]
    # Without the partitions (scontrol could not say), the global setting alone.
    assert [f.message.split(":")[0] for f in check.power_saving_findings(settings, config)] == [
        "300 s for warm pool cpu's nodes"]


def test_partitions_are_read_from_scontrols_one_liners():
    (spot, od, every) = check.parse_partitions(PARTITIONS.format(spot="INFINITE", od="7200"))
    assert (spot["PartitionName"], spot["Nodes"], spot["SuspendTime"]) == ("spot", "s[1-4]", "INFINITE")
    assert od["SuspendTime"] == "7200" and "SuspendTime" not in every


def test_a_shared_pool_whose_spot_nodes_do_not_weigh_less_than_on_demand_is_warned_of(tmp_path):
    """The pool keeps spot warm first; Slurm gives a job the idle node of lowest Weight (then
    slurm.conf's order). Equal weights let jobs take the on-demand nodes while spot idles."""
    path = tmp_path / "pool.yaml"
    path.write_text(textwrap.dedent("""
        slurm: {conf_server: "ctl:6817"}
        resume: {deadline: 100}
        nodesets:
          - {name: cpu-od, nodes: "o[1-2]", image: i, capacity: {type: on-demand}, warm: {max: 2, pool: cpu}}
          - {name: cpu-spot, nodes: "s[1-2]", image: i, capacity: {type: spot}, warm: {max: 2, pool: cpu}}
          - {name: gpu-spot, nodes: "g[1-2]", image: i, capacity: {type: spot}, warm: {max: 1}}
        """))
    config = config_module.load(str(path))
    mixed = check.mixed_pools(config)
    assert mixed == {"cpu": (["s1", "s2"], ["o1", "o2"])}  # a pool of spot alone has no choice to get wrong

    def sinfo(weights: dict[str, int]) -> str:  # sinfo -N lists a node once per partition
        return "".join(f"{n} {w}\n{n} {w}\n" for n, w in weights.items())

    assert check.weight_findings(mixed, check.parse_weights(sinfo({"s1": 1, "s2": 1, "o1": 10, "o2": 10}))) == []
    [warn] = check.weight_findings(mixed, check.parse_weights(sinfo({"s1": 1, "s2": 10, "o1": 20, "o2": 10})))
    assert warn.line() == (
        'WARN Weight: warm pool cpu: spot node s2 has Weight=10, not below on-demand node o2 (Weight=10): Slurm '
        'gives jobs idle on-demand nodes before the spot nodes the pool keeps warm; give the spot nodes the lower '
        'Weight (README "Warm pool")')
    # Nodes in no partition are not listed: nothing to compare.
    assert check.weight_findings(mixed, check.parse_weights(sinfo({"s1": 1, "s2": 1}))) == []


def test_a_slurm_command_that_fails_is_one_line_its_fatal_error(tmp_path):
    """scontrol that cannot reach slurmctld prints its retries, then why it gave up: the finding
    is one line, and it is the reason."""
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\necho 'scontrol: error: resolve_ctls_from_dns_srv: res_nsearch error' >&2\n"
                        "echo 'scontrol: error: fetch_config: DNS SRV lookup failed' >&2\n"
                        "echo 'scontrol: fatal: Could not establish a configuration source' >&2\nexit 1\n")
    scontrol.chmod(0o755)
    with pytest.raises(BridgeError) as raised:
        check.read_slurm_config(str(tmp_path))
    assert str(raised.value) == (f"{scontrol} show config exited 1: scontrol: fatal: Could not establish a "
                                 f"configuration source")
    scontrol.chmod(0o644)
    with pytest.raises(BridgeError, match="Permission denied"):
        check.read_slurm_config(str(tmp_path))


def test_a_node_two_nodesets_name_is_warned_of(tmp_path):
    path = tmp_path / "overlap.yaml"
    path.write_text(textwrap.dedent("""
        slurm: {conf_server: "ctl:6817"}
        resume: {deadline: 100}
        nodesets:
          - {name: cpu, nodes: "elastic[1-4]", image: i}
          - {name: gpu, nodes: "elastic[3-6]", image: i}
          - {name: big, nodes: "big[1-2]", image: i}
        """))
    config = config_module.load(str(path))
    assert [f.line() for f in check.overlap_findings(config)] == [
        "WARN nodeset gpu: elastic[3-4] also in nodeset cpu, which comes first: those nodes get cpu's pods"]
    assert config.nodeset_for("elastic3").name == "cpu"
