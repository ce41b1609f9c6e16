"""Power-saving hooks that run nodes as processes on this host (no Kubernetes): for tests of
the Slurm side alone, e.g. that the slurmd entrypoint and the cluster's config work together.

write_host_hooks(dir) writes executable ResumeProgram/SuspendProgram/ResumeFailProgram files;
slurmctld runs them with no PATH and only SLURM_CONF set, from which they find the rest.
"""

from __future__ import annotations

import signal
import subprocess
import sys
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
        pid = start_slurmd(node, conf_server=f"127.0.0.1:{port}", munge_key=layout.munge_key,
                           spool_dir=layout.slurmd_spool_dir(node),
                           log=layout.log_dir / f"node-{node}.out")
        _pid_file(layout, node).write_text(f"{pid}\n")


def suspend(hostlist: str, slurm_conf: str) -> None:
    """Also the ResumeFailProgram: Slurm does not call SuspendProgram for failed nodes."""
    layout = _layout(slurm_conf)
    for node in _nodes(hostlist, slurm_conf):
        pid_file = _pid_file(layout, node)
        if pid_file.exists():
            stop_slurmd(int(pid_file.read_text()))
            pid_file.unlink()


def main(action: str, argv: list[str], environ: dict[str, str]) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # slurmctld's blocked mask
    {"resume": resume, "suspend": suspend}[action](argv[1], environ["SLURM_CONF"])


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
                         ("resume-fail", "suspend")):
        path = directory / f"host-{name}"
        path.write_text(_WRAPPER.format(python=sys.executable, repo=str(REPO), action=action))
        path.chmod(0o755)
        paths[name] = path.resolve()
    return Hooks(resume=paths["resume"], suspend=paths["suspend"],
                 resume_fail=paths["resume-fail"])
