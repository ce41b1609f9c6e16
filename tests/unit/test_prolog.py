"""slurm-k8s-prolog: holds a job only until its nodes have registered, and never fails it."""

import os
import stat
import textwrap
import threading
import time

import pytest

from bridge import prolog
from bridge.slurm import NodeFacts


class Calls:
    def __init__(self, path):
        self.path = path

    def read_text(self) -> str:
        return str(len(self.path.read_text().splitlines()) if self.path.exists() else 0)


@pytest.fixture
def fake_scontrol(tmp_path, monkeypatch):
    """A scontrol that reports the nodes POWERING_UP for the first `n` calls, then up; a squeue
    that says the job is `job_state` (and lists it among the CONFIGURING jobs if it is)."""
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("SLURM_K8S_BRIDGE_CONFIG", str(tmp_path / "k8s-bridge.yaml"))

    def make(powering_up_calls: int, job_state: str = "CONFIGURING", waiting_state: str = "POWERING_UP",
             prolog_timeout: float = 3):
        (tmp_path / "k8s-bridge.yaml").write_text(textwrap.dedent(f"""
            slurm: {{conf_server: "h:1", bin_dir: "{tmp_path}", prolog_timeout: {prolog_timeout}}}
            resume: {{state_dir: "{tmp_path}/state"}}
            log: {{file: null}}
            nodesets: [{{name: a, nodes: "elastic[1-8]", image: "i"}}]
            """))
        # scontrol and squeue as Slurm 23.02+ answers (JSON nodes; squeue columns for the job);
        # scontrol answers every node, whichever were asked for: the bridge keeps those it wants.
        node = '{"name": "elastic%s", "cpus": 1, "real_memory": 100, "state": ["ALLOCATED", "CLOUD"%s]}'
        nodes = ", ".join([node] * 8)
        args = " ".join(f'{i} "$flag"' for i in range(1, 9))
        script = tmp_path / "scontrol"
        script.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            count=$(cat {tmp_path}/calls 2>/dev/null | wc -l); echo "$*" >> {tmp_path}/calls
            if [ "$count" -lt {powering_up_calls} ] && [ ! -e {tmp_path}/up ]; then flag=', "{waiting_state}"'; else flag=; fi
            printf '{{"meta": {{"slurm": {{"release": "24.11.5"}}}}, "nodes": [{nodes}]}}' {args}
            """))
        listed = "echo 1 2 3 4 5 6 7 8 9" if job_state == "CONFIGURING" else "echo 8 9"
        squeue = tmp_path / "squeue"
        squeue.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            echo "$*" >> {tmp_path}/squeue-calls
            case "$*" in *%A*) {listed} ;; *) echo {job_state} 0 ;; esac
            """))
        for path in (script, squeue):
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return Calls(tmp_path / "calls")

    return make


def test_returns_as_soon_as_the_nodes_registered(fake_scontrol):
    calls = fake_scontrol(powering_up_calls=3)
    pauses: list[float] = []
    assert prolog.run("7", "elastic[1-2]", sleep=lambda s: pauses.append(s) or time.sleep(s)) == 0
    assert int(calls.read_text()) == 4
    assert pauses == [prolog.POLL] * 3  # one look per POLL, no back-off while it waits


def test_nodes_already_up_cost_one_look(fake_scontrol):
    # A warm pool's nodes: the job waits for this prolog, which reads Slurm once (for the early
    # start and the wait together) and returns.
    calls = fake_scontrol(powering_up_calls=0)
    assert prolog.run("7", "elastic[1-2]") == 0
    assert int(calls.read_text()) == 1


def test_cold_nodes_get_their_pods_from_the_same_read(fake_scontrol, monkeypatch):
    # Allocated while powered down, before ResumeProgram: the early start creates the pods from
    # the read that found the nodes not up, then the prolog waits for them.
    from bridge import early

    calls = fake_scontrol(powering_up_calls=2, waiting_state="POWERED_DOWN")
    started, guarded = [], []
    monkeypatch.setattr(early, "start", lambda job_id, nodes, **kw: started.append((job_id, nodes, kw["facts"]))
                        or nodes)
    monkeypatch.setattr(early, "spawn_guard", lambda job_id, nodes: guarded.append((job_id, nodes)) or object())
    assert prolog.run("7", "elastic[1-2]") == 0
    [(job_id, nodes, facts)] = started
    assert (job_id, nodes, sorted(facts)) == (7, ["elastic1", "elastic2"], ["elastic1", "elastic2"])
    assert all("POWERED_DOWN" in f.state for f in facts.values())
    assert guarded == [(7, ["elastic1", "elastic2"])]
    assert int(calls.read_text()) == 3  # the first read, then one look per POLL until they are up


def test_a_job_on_no_nodesets_nodes_costs_no_slurm_read(fake_scontrol, tmp_path):
    # PrologSlurmctld runs for every job of the cluster: a static node's job is not held up.
    calls = fake_scontrol(powering_up_calls=1000)
    assert prolog.run("7", "static[1-64]") == 0
    assert int(calls.read_text()) == 0


def test_a_mixed_job_waits_for_its_elastic_nodes_only(fake_scontrol, tmp_path):
    calls = fake_scontrol(powering_up_calls=2)
    assert prolog.run("7", "static[1-2],elastic[3-4]") == 0
    asked = (tmp_path / "calls").read_text().splitlines()
    assert int(calls.read_text()) == 3 and all("static" not in line for line in asked)
    assert "elastic[3-4]" in asked[0]


def test_a_nodelist_it_cannot_read_is_one_line_and_never_holds_the_job(fake_scontrol, tmp_path, capsys):
    calls = fake_scontrol(powering_up_calls=1000)
    assert prolog.run("7", "elastic[1-") == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("slurm-k8s-prolog: ") and "\n" not in err
    assert int(calls.read_text()) == 0


def test_cancelled_job_lets_go_without_waiting_the_timeout(fake_scontrol, tmp_path):
    fake_scontrol(powering_up_calls=1000, job_state="CANCELLED", prolog_timeout=300)
    start = time.monotonic()
    assert prolog.run("7", "elastic[1-2]") == 0
    assert time.monotonic() - start < 60  # let go at the job's check (each JOB_POLL), not after 300 s
    assert (tmp_path / "squeue-calls").exists()


def test_timeout_never_fails_the_job(fake_scontrol):
    fake_scontrol(powering_up_calls=1000)
    start = time.monotonic()
    assert prolog.run("7", "elastic[1-2]") == 0
    assert time.monotonic() - start >= 3


def test_many_waiting_prologs_share_one_look_at_slurm(fake_scontrol, tmp_path):
    # 100 jobs resumed at once ran 100 prologs, each reading Slurm 5 times a second: slurmctld
    # saturated. Eight prologs waiting together now cost Slurm what one does.
    calls = fake_scontrol(powering_up_calls=1000, prolog_timeout=300)
    ends: list[float] = []
    start = time.monotonic()
    threading.Timer(1.5, (tmp_path / "up").touch).start()  # the nodes register

    def one(n: int) -> None:
        assert prolog.run(str(n), f"elastic{n}") == 0
        ends.append(time.monotonic())

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ends) == 8
    waited = max(ends) - start
    assert 1.5 <= waited < 60  # let go as the nodes registered, not at the 300 s timeout
    assert max(ends) - min(ends) < 10 * prolog.POLL  # all within a look or two of each other, not each on its own
    # each prolog's first look, then one look per POLL for all (alone: 8 per POLL)
    assert int(calls.read_text()) <= 8 + waited / prolog.POLL + 3
    jobs = (tmp_path / "squeue-calls").read_text().splitlines()
    assert len(jobs) <= 4 and all("%A" in j for j in jobs)  # one list of waiting jobs a second, no per-job read
    assert not list((tmp_path / "state" / prolog.BOARD / "waiting").iterdir())


class _Slurm:
    """Nodes POWERING_UP until `up`; every read recorded."""

    def __init__(self, configuring=("1", "2")):
        self.reads: list[list[str]] = []
        self.up = False
        self.configuring = set(configuring)

    def node_facts(self, nodes):
        self.reads.append(nodes)
        state = ("ALLOCATED",) if self.up else ("ALLOCATED", "POWERING_UP")
        return {n: NodeFacts(name=n, cpus=1, real_memory_mb=1, state=state) for n in nodes}

    def configuring_jobs(self):
        return set(self.configuring)


def test_one_look_reads_the_nodes_of_every_waiting_prolog(tmp_path):
    slurm, now = _Slurm(), [1000.0]
    first = prolog.Board.open(str(tmp_path), slurm, 300, now=lambda: now[0])
    second = prolog.Board.open(str(tmp_path), slurm, 300, now=lambda: now[0])
    with first.waiting("1", "elastic[1-2]"), second.waiting("2", "elastic3"):
        states, configuring = first.look(["elastic1", "elastic2"])
        assert slurm.reads == [["elastic1", "elastic2", "elastic3"]]
        assert configuring == {"1", "2"}
        assert second.look(["elastic3"])[0]["elastic3"] == ["ALLOCATED", "POWERING_UP"]
        assert len(slurm.reads) == 1  # the second prolog read the board, not Slurm
        now[0] += prolog.POLL
        slurm.up = True
        assert second.look(["elastic3"])[0]["elastic3"] == ["ALLOCATED"]
        assert len(slurm.reads) == 2


def test_a_killed_prologs_nodes_are_not_read_for_ever(tmp_path):
    slurm = _Slurm()
    board = prolog.Board.open(str(tmp_path), slurm, 300)
    stale = tmp_path / prolog.BOARD / "waiting" / "5"
    stale.write_text("elastic9")  # its prolog was SIGKILLed: nobody removed it
    os.utime(stale, (time.time() - 400, time.time() - 400))
    with board.waiting("1", "elastic1"):
        board.look(["elastic1"])
    assert slurm.reads == [["elastic1"]]


def test_without_a_writable_state_dir_a_prolog_backs_off_alone(fake_scontrol, tmp_path):
    fake_scontrol(powering_up_calls=1000)
    config = tmp_path / "k8s-bridge.yaml"
    (tmp_path / "a-file").write_text("")  # the state dir cannot be made, even by root
    config.write_text(config.read_text().replace(f"{tmp_path}/state", f"{tmp_path}/a-file/state")
                      .replace("prolog_timeout: 3", "prolog_timeout: 30"))
    pauses: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock[0] += seconds

    assert prolog.run("7", "elastic[1-2]", clock=lambda: clock[0], sleep=sleep) == 0
    assert pauses[0] == prolog.POLL and max(pauses) == prolog.MAX_POLL
    assert pauses == sorted(pauses)
    assert clock[0] >= 30 and len(pauses) < 30  # waited its timeout, ~1 look / 2 s at the end


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


def test_a_board_it_cannot_write_is_one_line_never_a_traceback(fake_scontrol, tmp_path, capsys):
    fake_scontrol(powering_up_calls=1000)
    (tmp_path / "state" / prolog.BOARD / "look.json").mkdir(parents=True)  # e.g. a site's mistake
    assert prolog.run("7", "elastic[1-2]") == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("slurm-k8s-prolog: state dir:") and "\n" not in err
