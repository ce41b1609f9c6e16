"""The hooks as slurmctld runs them: bare environment, hostlist in argv[1].

Every expected failure is one line on stderr and a distinct exit code, never a traceback.
"""

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge import hooks, resumefile
from bridge.errors import ResumeFileError, ResumeFileGone, SlurmError

BIN = Path(sys.executable).parent


def hook(name: str, *args: str, slurm_conf: Path, extra_env: dict | None = None):
    script = BIN / name
    if not script.exists():
        pytest.skip(f"{name} is not installed in this interpreter's environment (run testenv/setup.sh)")
    env = {"SLURM_CONF": str(slurm_conf), **(extra_env or {})}  # what slurmctld gives: no PATH
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=60,
                          cwd=slurm_conf.parent)


def one_line_error(result, prefix: str) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def write_config(directory: Path, kube_server: str = "http://127.0.0.1:1") -> None:
    (directory / "kubeconfig").write_text(textwrap.dedent(f"""
        apiVersion: v1
        kind: Config
        clusters: [{{name: c, cluster: {{server: "{kube_server}"}}}}]
        users: [{{name: u, user: {{token: t}}}}]
        contexts: [{{name: x, context: {{cluster: c, user: u, namespace: slurm}}}}]
        current-context: x
        """))
    (directory / "k8s-bridge.yaml").write_text(textwrap.dedent(f"""
        slurm: {{conf_server: "127.0.0.1:6817"}}
        kubernetes: {{kubeconfig: {directory / 'kubeconfig'}, retry_seconds: 0.5, timeout: 2}}
        log: {{file: {directory / 'bridge.log'}}}
        nodesets:
          - {{name: cpu, nodes: "elastic[1-4]", image: "slurm-k8s-bridge/slurmd:22.05.8"}}
        """))


@pytest.mark.parametrize("name", ["slurm-k8s-resume", "slurm-k8s-suspend", "slurm-k8s-resume-fail"])
def test_malformed_hostlist_is_exit_64_and_one_line(tmp_path, name):
    result = hook(name, "elastic[1-", slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 64
    assert "malformed hostlist 'elastic[1-'" in one_line_error(result, f"{name}: usage:")


def test_missing_argument_is_a_usage_error(tmp_path):
    result = hook("slurm-k8s-suspend", slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 64
    one_line_error(result, "slurm-k8s-suspend: usage: expected one argument")


def test_missing_config_is_exit_78_naming_the_file(tmp_path):
    result = hook("slurm-k8s-suspend", "elastic1", slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 78
    line = one_line_error(result, "slurm-k8s-suspend: config:")
    assert str(tmp_path / "k8s-bridge.yaml") in line


def test_invalid_config_is_exit_78_naming_the_field(tmp_path):
    (tmp_path / "k8s-bridge.yaml").write_text("slurm: {conf_server: 1}\nnodesets: []\n")
    result = hook("slurm-k8s-suspend", "elastic1", slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 78
    assert "slurm.conf_server: expected `str`, got `int`" in one_line_error(result, "slurm-k8s-suspend: config:")


def test_unreachable_api_is_exit_69_and_logged_as_json(tmp_path):
    write_config(tmp_path)
    result = hook("slurm-k8s-suspend", "elastic[1-2]", slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 69
    assert "cannot reach the Kubernetes API at http://127.0.0.1:1" in one_line_error(result, "slurm-k8s-suspend: kubernetes:")
    import json
    records = [json.loads(line) for line in (tmp_path / "bridge.log").read_text().splitlines()]
    failure = records[-1]
    assert failure["hook"] == "suspend" and failure["nodes"] == "elastic[1-2]"
    assert failure["outcome"] == "error" and failure["exit_code"] == 69


def test_a_failing_credential_plugin_is_a_config_error_and_the_suspended_nodes_pods_stay_owed(tmp_path):
    """An EKS/GKE token helper failing is for an admin (78, not a 69 outage), and the pods of the
    nodes Slurm has counted off are owed to the next hook call that reaches Kubernetes."""
    from bridge import owed

    write_config(tmp_path)
    kubeconfig = (tmp_path / "kubeconfig").read_text().replace(
        "user: {token: t}", "user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: /bin/false}}")
    (tmp_path / "kubeconfig").write_text(kubeconfig)
    config = tmp_path / "k8s-bridge.yaml"
    config.write_text(config.read_text() + f"resume: {{state_dir: {tmp_path / 'state'}}}\n")
    (tmp_path / "state").mkdir()
    result = hook("slurm-k8s-suspend", "elastic[1-2]", slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 78
    line = one_line_error(result, "slurm-k8s-suspend: config: kubernetes: kubeconfig ")
    assert line.endswith("Exec /bin/false returned 1")
    assert sorted(owed.owed(str(tmp_path / "state"))) == ["elastic1", "elastic2"]


def test_resume_fail_without_a_usable_kubeconfig_owes_the_pods_and_puts_back_the_bridges_cause(tmp_path):
    """Slurm gave up on the node; the bridge cannot reach Kubernetes at all (its kubeconfig is
    gone): the pod is owed to the next call, and the node keeps the cause the bridge had found
    rather than Slurm's bare "ResumeTimeout reached"."""
    import structlog

    from bridge import causes, owed

    write_config(tmp_path)
    bin_dir, calls = tmp_path / "slurm-bin", tmp_path / "scontrol-calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    config = tmp_path / "k8s-bridge.yaml"
    config.write_text(config.read_text().replace('slurm: {conf_server: "127.0.0.1:6817"}',
                                                 f'slurm: {{conf_server: "127.0.0.1:6817", bin_dir: {bin_dir}}}')
                      + f"resume: {{state_dir: {tmp_path / 'state'}}}\n")
    (tmp_path / "state").mkdir()
    causes.remember(str(tmp_path / "state"), "elastic1", "slurm-k8s-bridge: pod linux-elastic1: ErrImagePull",
                    log=structlog.get_logger())
    (tmp_path / "kubeconfig").unlink()
    result = hook("slurm-k8s-resume-fail", "elastic1", slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 78
    one_line_error(result, "slurm-k8s-resume-fail: config: kubernetes: cannot load kubeconfig ")
    assert list(owed.owed(str(tmp_path / "state"))) == ["elastic1"]
    assert calls.read_text().splitlines() == [
        "update NodeName=elastic1 State=DOWN Reason=slurm-k8s-bridge: pod linux-elastic1: ErrImagePull"]


def test_the_daemon_whose_credential_plugin_fails_says_why_it_cannot_list(tmp_path):
    """Its watches' first list failed on the plugin without a word (the informer died; "see the
    log" and nothing in it): now one line, 78, and a running daemon keeps trying."""
    write_config(tmp_path)
    kubeconfig = (tmp_path / "kubeconfig").read_text().replace(
        "user: {token: t}", "user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: /bin/false}}")
    (tmp_path / "kubeconfig").write_text(kubeconfig)
    result = subprocess.run([str(BIN / "slurm-k8s-bridge"), "daemon", "--once", "--dry-run"], capture_output=True,
                            text=True, timeout=60, env={"SLURM_K8S_BRIDGE_CONFIG": str(tmp_path / "k8s-bridge.yaml")})
    assert result.returncode == 78
    line = one_line_error(result, "slurm-k8s-bridge: config: kubernetes: kubeconfig ")
    assert line.endswith("Exec /bin/false returned 1")
    assert "Exec /bin/false returned 1" in (tmp_path / "bridge.log").read_text()  # "cannot list yet", with the cause


def test_resume_with_a_config_that_does_not_load_gives_its_nodes_back_with_the_sites_scontrol(tmp_path):
    """A typo elsewhere in the config: the nodes still go back to Slurm (DOWN with the cause)
    through the scontrol its slurm.bin_dir names, not one looked for in /usr/bin."""
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol-calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    (tmp_path / "k8s-bridge.yaml").write_text(textwrap.dedent(f"""
        slurm: {{conf_server: "127.0.0.1:6817", bin_dir: {bin_dir}}}
        colour: blue
        log: {{file: {tmp_path / 'bridge.log'}}}
        nodesets: [{{name: cpu, nodes: "elastic[1-4]", image: "slurm-k8s-bridge/slurmd:22.05.8"}}]
        """))
    result = hook("slurm-k8s-resume", "elastic[1-2]", slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 78
    assert "colour" in one_line_error(result, "slurm-k8s-resume: config:")
    [call] = calls.read_text().splitlines()
    assert call.startswith("update NodeName=elastic[1-2] State=DOWN Reason=slurm-k8s-bridge: config: ") and "colour" in call


@pytest.mark.parametrize("name, args", [("slurm-k8s-resume", ["--help"]), ("slurm-k8s-bridge", ["--help"]),
                                        ("slurm-k8s-bridge", ["--version"])])
def test_output_that_cannot_be_written_is_one_line_and_exit_74(tmp_path, name, args):
    """A full disk under `--help > file`: EX_IOERR and the reason, not a traceback."""
    script = BIN / name
    with open("/dev/full", "w") as full:
        result = subprocess.run([str(script), *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
                                env={"SLURM_CONF": str(tmp_path / "slurm.conf")})
    assert result.returncode == 74
    assert one_line_error(result, f"{name}: output: cannot write: ") == f"{name}: output: cannot write: No space left on device"


def test_hooks_work_with_stdio_closed_as_slurmscriptd_starts_them(tmp_path):
    """slurmctld's script daemon closes stdin/stdout/stderr: the hook must still do its work
    and report through its exit code and log, not die with exit 1 on its first print."""
    write_config(tmp_path)
    script = BIN / "slurm-k8s-suspend"
    closed = ["/bin/sh", "-c", 'exec "$0" "$@" <&- >&- 2>&-', str(script)]
    bad = subprocess.run([*closed, "elastic[1-"], env={"SLURM_CONF": str(tmp_path / "slurm.conf")}, timeout=60)
    assert bad.returncode == 64
    import json
    [record] = [json.loads(line) for line in (tmp_path / "bridge.log").read_text().splitlines()]
    assert (record["nodes"], record["exit_code"], record["kind"]) == ("elastic[1-", 64, "usage")
    down = subprocess.run([*closed, "elastic1"], env={"SLURM_CONF": str(tmp_path / "slurm.conf")}, timeout=60)
    assert down.returncode == 69  # the API in write_config is unreachable
    assert '"exit_code": 69' in (tmp_path / "bridge.log").read_text()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_and_exits_0(tmp_path, flag):
    result = hook("slurm-k8s-resume", flag, slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: slurm-k8s-resume HOSTLIST") and "68 a node Slurm does not know" in result.stdout


def test_an_unknown_option_is_not_taken_for_a_node(tmp_path):
    result = hook("slurm-k8s-resume", "--verbose", slurm_conf=tmp_path / "slurm.conf")
    assert result.returncode == 64
    one_line_error(result, "slurm-k8s-resume: usage: unknown option '--verbose'")


class _Context:
    """What ``hooks._resume`` uses of a hook call, on the in-memory fakes."""

    def __init__(self, nodes, config, slurm, kube, log):
        self.nodes, self.config, self.log, self._slurm, self._kube = nodes, config, log, slurm, kube

    def slurm(self):
        return self._slurm

    @contextlib.contextmanager
    def kube(self):
        yield self._kube


def test_resume_file_gone_with_its_slurmctld_reads_the_jobs_from_slurm(config, slurm, kube, log, monkeypatch):
    """slurmctld SIGKILLed while its ResumeProgram started: $SLURM_RESUME_FILE (a memfd of the dead
    process) is gone. The restarted slurmctld still has job 7 CONFIGURING on elastic[1-2], so the
    hook makes their pods for job 7 instead of failing the nodes and requeueing a job that can run."""
    followed = []
    monkeypatch.setattr("bridge.follow.spawn", lambda path, groups: followed.append(groups))
    monkeypatch.setenv("SLURM_RESUME_FILE", "/proc/999999999/fd/9")
    with pytest.raises(ResumeFileGone) as gone:
        resumefile.read_env()
    slurm.add_job(7, ["elastic1", "elastic2", "elastic3"])
    hooks._resume(_Context(["elastic1", "elastic2"], config, slurm, kube, log), None, gone.value)
    assert {p["metadata"]["labels"]["slurm-k8s-bridge/job-id"] for p in kube.pods.values()} == {"7"}
    assert sorted(kube.pods) == ["linux-elastic1", "linux-elastic2"] and slurm.down == {}
    assert followed == [[((7,), ["elastic1", "elastic2"])]]


def test_a_follower_that_cannot_be_started_fails_no_node(config, slurm, kube, log, monkeypatch):
    """No process to be had (fork fails, EAGAIN): the pods stand and the job goes ahead; a pod
    that fails later is found at ResumeTimeout, as without a follower."""
    def no_fork(path, groups):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("bridge.follow.spawn", no_fork)
    slurm.add_job(7, ["elastic1", "elastic2"])
    request = resumefile.parse('{"jobs":[{"job_id":7,"nodes":"elastic[1-2]"}],"all_nodes":"elastic[1-2]"}')
    with capture_logs() as logs:
        hooks._resume(_Context(["elastic1", "elastic2"], config, slurm, kube, log), request, None)
    assert sorted(kube.pods) == ["linux-elastic1", "linux-elastic2"] and slurm.down == {} and slurm.powered_down == {}
    assert [e["nodes"] for e in logs if e["event"].startswith("cannot start the follower")] == ["elastic[1-2]"]


def test_resume_file_gone_and_slurm_unreachable_is_the_one_line_resume_file_error(config, slurm, kube, log,
                                                                                  monkeypatch):
    """Nothing to go on once slurmctld stayed away for GONE_WAIT: the call fails as an unreadable
    file always did (the nodes are given back by run_hook), and the line says both why."""
    monkeypatch.setattr(hooks, "GONE_WAIT", 0.2)
    slurm.unreachable = SlurmError("squeue: Unable to contact slurm controller")
    gone = ResumeFileGone("cannot read SLURM_RESUME_FILE=/proc/1/fd/9: No such file or directory")
    with pytest.raises(ResumeFileError) as error:
        hooks._resume(_Context(["elastic1"], config, slurm, kube, log), None, gone)
    assert "No such file" in str(error.value) and "Unable to contact slurm controller" in str(error.value)
    assert kube.pods == {}
