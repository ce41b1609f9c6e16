"""The project's own Docker engine on this machine: a private dockerd the tests start and stop.

    with testenv.docker.engine() as env:      # {"DOCKER_HOST": "unix:///run/slurm-k8s-bridge-docker.sock"}
        subprocess.run(["docker", "ps"], env={**os.environ, **env})

    python3 -m testenv.docker run -- CMD...   # CMD with the engine up (testenv/docker-setup.sh uses it)
    python3 -m testenv.docker status          # what is built, whether the engine runs

The engine has a data root of its own (images persist there between runs, so a second set-up
builds nothing), its own socket and exec root, and no bridge or iptables rules: every test
container uses the host's network (see facts: this VM's firewall drops traffic between network
namespaces), and the VM's firewall is left as it was.

Several users may need the engine at once (a test session and a benchmark): each holds a lease
(a file named after its pid) and the engine stops when the last lease is released, if this
module started it. An engine started by hand is used and never stopped. Stdlib only: the set-up
script runs it before the venv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

DATA_ROOT = Path("/var/lib/slurm-k8s-bridge-docker")
EXEC_ROOT = Path("/run/slurm-k8s-bridge-docker")
SOCKET = Path("/run/slurm-k8s-bridge-docker.sock")
DOCKER_HOST = f"unix://{SOCKET}"
PIDFILE = EXEC_ROOT / "dockerd.pid"
LEASES = EXEC_ROOT / "leases"
OWNED = EXEC_ROOT / "started-by-testenv"
"""Present while the engine runs because this module started it: only then does it stop it."""
LOG = DATA_ROOT / "dockerd.log"
SETUP_FAILED = DATA_ROOT / "setup-failed"
"""Written by testenv/docker-setup.sh when it fails, with the reason; removed when it succeeds."""

COMPOSE_V2 = DATA_ROOT / "compose-v2" / "docker-compose"
"""Docker Compose v2, fetched by the set-up (Debian has only v1, `docker-compose`)."""

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCE_LABEL = "org.slurm-k8s-bridge.source-hash"
"""Label of each image built by the set-up: hash of its Dockerfile and the files it copies."""
DEFAULT_SLURM_VERSION = "22.05.8"
SLURM_RELEASES = {"22.05": "bookworm", "24.11": "trixie", "26.05": "sid"}
"""Slurm release → the Debian release that packages it: the images of each are built from that
release's packages (docker/*/Dockerfile's DEBIAN_RELEASE), tagged with the Slurm release and,
as an alias, the exact version installed (e.g. slurmd:24.11 and slurmd:24.11.5)."""
PYTHONS = {"bookworm": "3.11", "trixie": "3.13", "sid": "3.14"}
"""python3 of each Debian release: the slurmctld image's wheels are fetched for it (when sid moves
on, its build fails with pip's "No matching distribution found": update it here)."""


_held: dict[int, int] = {}
"""Leases this process holds, by holder: nested acquire/release pairs share one lease file."""


class DockerUnavailable(RuntimeError):
    """The engine cannot be had on this machine; the message says why and what to run."""


# ---- images ----------------------------------------------------------------------------------


def slurm_version() -> str:
    """The upstream Slurm version of this host's slurmctld (images must match it), e.g. 22.05.8."""
    for package in ("slurmctld", "slurm-client", "slurmd"):
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                                check=False, env={"PATH": SYSTEM_PATH})
        if result.returncode == 0 and result.stdout.strip():
            return _upstream(result.stdout.strip())
    return DEFAULT_SLURM_VERSION


def _upstream(debian_version: str) -> str:
    """22.05.8-4+deb12u3 -> 22.05.8 (and 1:2.0-1 -> 2.0)."""
    return debian_version.split(":", 1)[-1].rsplit("-", 1)[0]


def release_of(version: str) -> str:
    """24.11.5 or 24.11 -> 24.11, the key of SLURM_RELEASES."""
    return ".".join(version.split(".")[:2])


def slurmd_image(version: str | None = None) -> str:
    return f"slurm-k8s-bridge/slurmd:{version or slurm_version()}"


def slurmctld_image(version: str | None = None) -> str:
    return f"slurm-k8s-bridge/slurmctld:{version or slurm_version()}"


# ---- the engine ------------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def ping(timeout: float = 2.0) -> bool:
    """Whether an engine answers on the project's socket."""
    connection = _UnixConnection(SOCKET, timeout)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def available() -> str | None:
    """None if the engine can be started here, else why not (one line)."""
    if SETUP_FAILED.exists():
        return f"testenv/docker-setup.sh failed: {SETUP_FAILED.read_text().strip()}"
    if ping():
        return None
    if shutil.which("dockerd", path=SYSTEM_PATH) is None:
        return "dockerd is not installed: run testenv/docker-setup.sh (testenv/test.sh does)"
    if os.geteuid() != 0:
        return "dockerd needs root"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _live_leases() -> list[Path]:
    leases = []
    for lease in LEASES.glob("*") if LEASES.is_dir() else []:
        if lease.name.isdigit() and _pid_alive(int(lease.name)):
            leases.append(lease)
        else:
            lease.unlink(missing_ok=True)  # its holder died without releasing it
    return leases


def _dockerd_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def acquire(holder: int | None = None, *, timeout: float = 60.0) -> dict[str, str]:
    """Take a lease for `holder` (default: this process) and start the engine if it is not up.

    Returns the environment clients need (DOCKER_HOST). Raises DockerUnavailable."""
    reason = available()
    if reason:
        raise DockerUnavailable(reason)
    holder = holder or os.getpid()
    LEASES.mkdir(parents=True, exist_ok=True)
    (LEASES / str(holder)).touch()
    _held[holder] = _held.get(holder, 0) + 1
    if not ping():
        try:
            _start_dockerd(timeout)
        except BaseException:
            release(holder)
            raise
    return {"DOCKER_HOST": DOCKER_HOST}


def release(holder: int | None = None, *, timeout: float = 30.0) -> None:
    """Give up the lease; the last one out stops the engine if this module started it."""
    holder = holder or os.getpid()
    _held[holder] = _held.get(holder, 1) - 1
    if _held[holder] > 0:
        return
    del _held[holder]
    (LEASES / str(holder)).unlink(missing_ok=True)
    if _live_leases() or not OWNED.exists():
        return
    pid = _dockerd_pid()
    if pid is not None:
        _terminate([pid], timeout)
    # dockerd's own containerd ends after it: wait, or the next start would meet it half-stopped.
    _terminate(_engine_processes(), 10.0)
    OWNED.unlink(missing_ok=True)


def _terminate(pids: list[int], timeout: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _engine_processes() -> list[int]:
    """Live processes of the project's engine other than dockerd (its containerd and shims)."""
    marker = str(EXEC_ROOT).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline and _pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def engine(*, timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """The engine for the time of the block (see acquire)."""
    env = acquire(timeout=timeout)
    try:
        yield env
    finally:
        release()


def _start_dockerd(timeout: float) -> None:
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    EXEC_ROOT.mkdir(parents=True, exist_ok=True)
    stale = _dockerd_pid()
    if stale is not None:  # running but not answering: wait for it a little, then give up
        if _wait_ping(stale, timeout):
            return
        raise DockerUnavailable(f"dockerd (pid {stale}) does not answer on {SOCKET}; see {LOG}")
    _terminate(_engine_processes(), 10.0)  # a containerd left by an engine that was killed
    argv = ["dockerd", "--data-root", str(DATA_ROOT), "--exec-root", str(EXEC_ROOT), "--host", DOCKER_HOST,
            "--pidfile", str(PIDFILE), "--iptables=false", "--ip-masq=false", "--bridge=none",
            "--shutdown-timeout", "5", "--log-level", "warn"]
    with open(LOG, "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                   env={**os.environ, "PATH": SYSTEM_PATH}, preexec_fn=_unblock_signals)
    OWNED.touch()
    if not _wait_ping(process.pid, timeout):
        process.kill()
        OWNED.unlink(missing_ok=True)
        raise DockerUnavailable(f"dockerd did not answer on {SOCKET} within {timeout:.0f} s: "
                                f"{_tail(LOG)}")


def _unblock_signals() -> None:
    """A Slurm hook or a test runner may have blocked SIGTERM: dockerd must get it at stop."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _wait_ping(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(timeout=1.0):
            return True
        if not _pid_alive(pid):
            return False
        time.sleep(0.1)
    return False


def _tail(path: Path, limit: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip().replace("\n", " | ")
    except OSError:
        return ""


# ---- CLI -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m testenv.docker", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a command with the engine up (DOCKER_HOST set), then release it")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("status", help="whether the engine runs, the Slurm version images are built for")
    sub.add_parser("version", help="the Slurm version image tags carry")
    sub.add_parser("releases", help="each Slurm release with its Debian release and python3, one a line")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(slurm_version())
        return 0
    if args.command == "releases":
        for slurm, debian in SLURM_RELEASES.items():
            print(slurm, debian, PYTHONS[debian])
        return 0
    if args.command == "status":
        print(f"engine: {'up' if ping() else 'down'} ({DOCKER_HOST}); slurm version {slurm_version()}; "
              f"leases: {len(_live_leases())}")
        reason = available()
        if reason:
            print(f"unavailable: {reason}")
        return 0
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("run: a command is needed")
    try:
        env = acquire()
    except DockerUnavailable as e:
        print(f"testenv.docker: error: {e}", file=sys.stderr)
        return 69
    try:
        return subprocess.run(command, env={**os.environ, **env}, check=False).returncode
    finally:
        release()


if __name__ == "__main__":
    sys.exit(main())


SESSION_LABEL = "org.slurm-k8s-bridge.testenv.session"
"""Label of every container the test environment starts, with the test session that started it
(``$SLURM_K8S_BRIDGE_TEST_SESSION``, set by the Docker tests' fixtures): on an engine that
several test runs share, a run's leak check looks only at its own containers."""


def session_labels() -> dict[str, str]:
    session = os.environ.get("SLURM_K8S_BRIDGE_TEST_SESSION")
    return {SESSION_LABEL: session} if session else {}
