"""One elastic node as a process on this host: the pod's entrypoint run without a container.

What a pod gives slurmd and a plain host does not, and how it is stood in for:
- its own /run: a configless slurmd 22.05 fetches its config through munge's default socket
  /run/munge/munge.socket.2 (it has no --authinfo yet), so each node gets a private mount
  namespace with a tmpfs on /run, where its own munged listens. After the fetch slurmd uses
  the cluster's AuthInfo socket; both munged hold the same key.
- its own IP: every slurmd listens on the host, on the node's Port= from slurm.conf, and is
  told its name with -N.
- a PID namespace that ends munged with slurmd: the node runs in its own session and is
  stopped by signalling the whole process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from testenv.slurm.processes import is_alive

ENTRYPOINT = Path(__file__).resolve().parents[2] / "docker" / "slurmd" / "entrypoint.sh"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PRIVATE_RUN = 'mount -t tmpfs -o mode=755 tmpfs /run && exec "$@"'


def entrypoint_command(*slurmd_args: str, entrypoint: Path = ENTRYPOINT) -> list[str]:
    """The pod's entrypoint with these slurmd arguments, inside a private /run."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _PRIVATE_RUN,
            "sh", str(entrypoint), *slurmd_args]


def slurmd_args(node: str, conf_server: str) -> list[str]:
    """What a pod template passes: -b because the node did not boot (see facts/slurm.md)."""
    return ["-b", "-N", node, "--conf-server", conf_server]


def node_env(*, munge_key: Path, spool_dir: Path) -> dict[str, str]:
    """A pod's environment: no SLURM_CONF (configless), a PATH (hooks run without one)."""
    return {"PATH": SYSTEM_PATH, "MUNGE_KEY_FILE": str(munge_key),
            "SLURMD_SPOOL_DIR": str(spool_dir)}


def start_slurmd(node: str, *, conf_server: str, munge_key: Path, spool_dir: Path,
                 log: Path) -> subprocess.Popen[bytes]:
    """Start one node's entrypoint in its own session. Its pid becomes slurmd's (exec)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            entrypoint_command(*slurmd_args(node, conf_server)),
            env=node_env(munge_key=munge_key, spool_dir=spool_dir),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_unblock_signals)


def _unblock_signals() -> None:
    """In the child: a hook inherits slurmctld's blocked SIGTERM/SIGINT/SIGHUP and passes it
    on, and slurmd would never see the SIGTERM that stops it."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def stop_slurmd(pid: int, *, grace: float = 10.0) -> None:
    """SIGTERM the node's process group (slurmd and its munged), SIGKILL it after `grace`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # munged, and slurmd if it hung
