"""slurm-k8s-prolog: holds a job only until its nodes have registered, and never fails it."""

import os
import stat
import textwrap
import time

import pytest

from bridge import prolog


@pytest.fixture
def fake_scontrol(tmp_path, monkeypatch):
    """A scontrol that reports the nodes POWERING_UP for the first `n` calls, then up."""
    (tmp_path / "k8s-bridge.yaml").write_text(textwrap.dedent(f"""
        slurm: {{conf_server: "h:1", bin_dir: "{tmp_path}", prolog_timeout: 3}}
        log: {{file: null}}
        nodesets: [{{name: a, nodes: "elastic[1-2]", image: "i"}}]
        """))
    monkeypatch.setenv("SLURM_K8S_BRIDGE_CONFIG", str(tmp_path / "k8s-bridge.yaml"))

    def make(powering_up_calls: int, job_state: str = "CONFIGURING"):
        # scontrol and squeue as Slurm 23.02+ answers (JSON nodes; squeue columns for the job)
        node = '{"name": "elastic%s", "cpus": 1, "real_memory": 100, "state": ["ALLOCATED", "CLOUD"%s]}'
        script = tmp_path / "scontrol"
        script.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            count=$(cat {tmp_path}/calls 2>/dev/null || echo 0); echo $((count + 1)) > {tmp_path}/calls
            if [ "$count" -lt {powering_up_calls} ]; then flag=', "POWERING_UP"'; else flag=; fi
            printf '{{"meta": {{"slurm": {{"release": "24.11.5"}}}}, "nodes": [{node}, {node}]}}' 1 "$flag" 2 "$flag"
            """))
        squeue = tmp_path / "squeue"
        squeue.write_text(f"#!/bin/sh\necho {job_state} 0\n")
        for path in (script, squeue):
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return tmp_path / "calls"

    return make


def test_returns_as_soon_as_the_nodes_registered(fake_scontrol):
    calls = fake_scontrol(powering_up_calls=3)
    assert prolog.wait_for_nodes("7", "elastic[1-2]") == 0
    assert int(calls.read_text()) >= 4


def test_nodes_already_up_cost_one_look(fake_scontrol):
    calls = fake_scontrol(powering_up_calls=0)
    assert prolog.wait_for_nodes("7", "elastic[1-2]") == 0
    assert int(calls.read_text()) == 1


def test_cancelled_job_lets_go_without_waiting_the_timeout(fake_scontrol):
    fake_scontrol(powering_up_calls=1000, job_state="CANCELLED")
    start = time.monotonic()
    assert prolog.wait_for_nodes("7", "elastic[1-2]") == 0
    assert time.monotonic() - start < 2.5


def test_timeout_never_fails_the_job(fake_scontrol):
    fake_scontrol(powering_up_calls=1000)
    start = time.monotonic()
    assert prolog.wait_for_nodes("7", "elastic[1-2]") == 0
    assert time.monotonic() - start >= 3


def _process(proc, pid: int, ppid: int, *argv: str) -> None:
    (proc / str(pid)).mkdir()
    (proc / str(pid) / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    (proc / str(pid) / "status").write_text(f"Name:\t{argv[0]}\nPPid:\t{ppid}\n")


def test_finds_slurm_conf_on_the_command_line_of_the_slurmctld_that_started_it(tmp_path):
    # slurmctld gives PrologSlurmctld no SLURM_CONF; 22.05 runs it from slurmscriptd, a fork of
    # slurmctld with the same command line, with a shell between them on some sites.
    _process(tmp_path, 10, 1, "/usr/sbin/slurmctld", "-D", "-f", "/srv/slurm/slurm.conf")
    _process(tmp_path, 11, 10, ": slurmscriptd")  # its real title: setproctitle drops -f
    _process(tmp_path, 12, 11, "/bin/sh", "/srv/wrapper")
    assert prolog.controller_slurm_conf(12, proc=str(tmp_path)) == "/srv/slurm/slurm.conf"


def test_a_slurmctld_without_f_leaves_slurm_its_default_slurm_conf(tmp_path):
    _process(tmp_path, 10, 1, "/usr/sbin/slurmctld", "-D")
    _process(tmp_path, 11, 10, "/usr/sbin/slurmctld", "-D")
    assert prolog.controller_slurm_conf(11, proc=str(tmp_path)) is None
    assert prolog.controller_slurm_conf(99, proc=str(tmp_path)) is None  # parent gone
