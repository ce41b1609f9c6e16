"""Power-saving hooks that run nodes as processes on this host (no Kubernetes): for tests of
the Slurm side alone, e.g. that the slurmd entrypoint and the cluster's config work together.

write_host_hooks(dir) writes executable ResumeProgram/SuspendProgram/ResumeFailProgram and
PrologSlurmctld files (the prolog a stand-in for bridge/prolog.py); slurmctld runs them with
no PATH and only SLURM_CONF set, from which they find the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from testenv.slurm.config import Hooks, Layout, read_settings
from testenv.slurm.hostnode import start_slurmd, stop_slurmd

REPO = Path(__file__).resolve().parents[2]
SCONTROL = "/usr/bin/scontrol"


def _layout(slurm_conf: str) -> Layout:
    return Layout(Path(slurm_conf).parent)


def _nodes(hostlist: str, slurm_conf: str) -> list[str]:
    out = subprocess.run([SCONTROL, "show", "hostnames", hostlist], check=True,
                         capture_output=True, text=True, env={"SLURM_CONF": slurm_conf})
    return out.stdout.split()


def _pid_file(layout: Layout, node: str) -> Path:
    return layout.run_dir / f"node-{node}.pid"


def resume(hostlist: str, slurm_conf: str) -> None:
    layout = _layout(slurm_conf)
    port = read_settings(layout.slurm_conf)["SlurmctldPort"]
    for node in _nodes(hostlist, slurm_conf):
        proc = start_slurmd(node, conf_server=f"127.0.0.1:{port}", munge_key=layout.munge_key,
                           spool_dir=layout.slurmd_spool_dir(node),
                           log=layout.log_dir / f"node-{node}.out")
        _pid_file(layout, node).write_text(f"{proc.pid}\n")


def suspend(hostlist: str, slurm_conf: str) -> None:
    """Also the ResumeFailProgram: Slurm does not call SuspendProgram for failed nodes."""
    layout = _layout(slurm_conf)
    for node in _nodes(hostlist, slurm_conf):
        pid_file = _pid_file(layout, node)
        if pid_file.exists():
            stop_slurmd(int(pid_file.read_text()))
            pid_file.unlink()


def _scontrol_fields(slurm_conf: str, *args: str) -> list[dict[str, str]]:
    """The records scontrol shows; [] when it fails (its message goes to the hook's log)."""
    result = subprocess.run([SCONTROL, "--oneliner", "show", *args], capture_output=True,
                            text=True, env={"SLURM_CONF": slurm_conf})
    if result.returncode != 0:
        print(f"scontrol show {' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}", file=sys.stderr)
        return []
    return [dict(f.split("=", 1) for f in line.split() if "=" in f)
            for line in result.stdout.splitlines()]


def _still_booting(nodes: list[dict[str, str]]) -> bool:
    return any("POWERING_UP" in n["State"] or "POWERED_DOWN" in n["State"] for n in nodes)


def prolog(job_id: str, nodelist: str, slurm_conf: str) -> None:
    """PrologSlurmctld: return once the job's nodes registered (ends CONFIGURING at once
    instead of at slurmctld's next 30 s pass), or when the job stopped waiting."""
    layout = _layout(slurm_conf)
    deadline = time.monotonic() + int(read_settings(layout.slurm_conf)["ResumeTimeout"])
    while time.monotonic() < deadline:
        # A read that fails (slurmctld busy) says nothing: look again rather than let the job go
        # to the 30 s pass.
        nodes = _scontrol_fields(slurm_conf, "node", nodelist)
        if nodes and not _still_booting(nodes):
            return
        jobs = _scontrol_fields(slurm_conf, "job", job_id)
        if jobs and jobs[0].get("JobState") not in ("CONFIGURING", "RUNNING"):
            return
        time.sleep(0.2)


def _log_stderr(slurm_conf: str, action: str) -> None:
    """slurmctld discards a hook's output: keep tracebacks where a failing test can show them."""
    log = _layout(slurm_conf).log_dir / f"hook-{action}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def main(action: str, argv: list[str], environ: dict[str, str]) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # slurmctld's blocked mask
    conf = environ["SLURM_CONF"]
    _log_stderr(conf, action)
    if action == "prolog":
        prolog(environ["SLURM_JOB_ID"], environ["SLURM_JOB_NODELIST"], conf)
    else:
        {"resume": resume, "suspend": suspend}[action](argv[1], conf)


_WRAPPER = """#!{python}
import os, sys
sys.path.insert(0, {repo!r})
from testenv.slurm.hosthooks import main
main({action!r}, sys.argv, dict(os.environ))
"""


def write_host_hooks(directory: Path) -> Hooks:
    """Executable hook files in `directory`, run by this Python (hooks have no PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, action in (("resume", "resume"), ("suspend", "suspend"),
                         ("resume-fail", "suspend"), ("prolog", "prolog")):
        path = directory / f"host-{name}"
        path.write_text(_WRAPPER.format(python=sys.executable, repo=str(REPO), action=action))
        path.chmod(0o755)
        paths[name] = path.resolve()
    return Hooks(resume=paths["resume"], suspend=paths["suspend"],
                 resume_fail=paths["resume-fail"], prolog_slurmctld=paths["prolog"])
