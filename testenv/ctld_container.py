"""slurmctld of any tested Slurm release, in a container of the project's Docker engine.

    with engine.engine() as docker_env:
        conf = render_conf("24.11", cluster="c", port=port, log_dir=workdir / "log", ...)
        ctld = SlurmctldContainer("24.11", share=workdir, conf=conf, docker_env=docker_env, port=port).start()
        ctld.run("sbatch", "-N2", "--wrap", "hostname")

    Environment(runtime="docker", slurm_version="24.11")   # ContainerCluster: the test environment's Slurm

The host runs Debian 12's Slurm 22.05 only; 24.11 and 26.05 run from their images
(slurm-k8s-bridge/slurmctld:<release>, testenv/docker-setup.sh) on the host's network, so the
Kubernetes stand-in and the slurmd pods reach it on loopback as they reach a host slurmctld.
What the container sees of the host is one directory, bound at the same path and named here:
``share``, which holds slurm.conf, the munge key, the logs and whatever its hooks read and write
(the bridge's config, kubeconfig and log). munged runs inside it with the key from that
directory, on the default socket: its slurm.conf must name container paths for everything the
configless slurmd pods also read (they see nothing of the host).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from testenv import docker as engine
from testenv.slurm import COMMON_SETTINGS, NodeGroup, Timeouts, free_ports
from testenv.slurm_versions import power_saving_settings

START = """set -e
mkdir -p /run/munge /run/munged /run/slurmctld /var/spool/slurmd "$SHARE/log"
# slurmctld runs as SlurmUser (slurm, uid 64030 as on the host: Debian fixes it), as a site's
# does: it writes its log and pid file there, and its hooks run as that user too.
chown slurm:slurm /run/slurmctld "$SHARE/log"
chmod 0755 /run/munge
chmod 0700 /run/munged
install -m 0400 "$SHARE/munge.key" /run/munged/munge.key
# The site's users, as on a submit host (LDAP there): slurmctld resolves the submitter too.
for db in passwd group; do
    if [ -f "$SHARE/site-users/$db" ]; then cat "$SHARE/site-users/$db" >> "/etc/$db"; fi
done
# Slurm's default paths, as on a site: PrologSlurmctld gets no SLURM_CONF, and the bridge looks
# for its config beside slurm.conf.
ln -sf "$SLURM_CONF" /etc/slurm/slurm.conf
ln -sf "$(dirname "$SLURM_CONF")/k8s-bridge.yaml" /etc/slurm/k8s-bridge.yaml
munged --foreground --key-file=/run/munged/munge.key --pid-file=/run/munged/munged.pid \
    --seed-file=/run/munged/munged.seed &
until munge -n 2>/dev/null | unmunge >/dev/null 2>&1; do sleep 0.1; done
exec slurmctld -D -f "$SLURM_CONF"
"""
"""The container's command: munged, then slurmctld in the foreground as PID 1."""
FIRST_SCHEDULING_PASS = 3.5
"""Seconds after start when slurmctld's first scheduling pass has run (see testenv/slurm)."""


class ControllerError(RuntimeError):
    """The controller did not start, or a command could not be run in it."""


def docker_cli() -> str:
    """Debian's CLI, which matches its engine (another docker CLI on PATH may warn)."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def write_munge_key(path: Path) -> None:
    path.write_bytes(secrets.token_bytes(1024))
    path.chmod(0o400)


class SlurmctldContainer:
    """One slurmctld container; ``stop()`` removes it."""

    def __init__(self, version: str, *, share: Path, conf: str, docker_env: dict[str, str],
                 port: int, start_timeout: float = 60.0, site_dirs: Sequence[Path] = (),
                 users: dict[str, str] | None = None) -> None:
        """version: a Slurm release or exact version, whose slurmctld image is run;
        share: the one host directory the container sees (same path); conf: slurm.conf;
        port: its SlurmctldPort (clients inside the container need nothing else);
        site_dirs: the site's filesystems, bound at the same paths (the container is then also
        the submit host); users: ``passwd`` and ``group`` lines added to the container's own."""
        self.version = version
        self.share = share
        self.port = port
        self._site_dirs = tuple(site_dirs)
        self._users = users or {}
        self._conf = conf
        self._docker_env = docker_env
        self._start_timeout = start_timeout
        self.name = f"sk8s-slurmctld-{os.getpid()}-{secrets.token_hex(3)}"
        self.image = engine.slurmctld_image(version)
        self._started = False
        self.started_at = 0.0

    @property
    def conf_path(self) -> Path:
        return self.share / "slurm.conf"

    @property
    def munge_key_path(self) -> Path:
        return self.share / "munge.key"

    @property
    def job_dir(self) -> Path:
        return self.share / "jobs"

    @property
    def address(self) -> str:
        """host:port for `slurmd --conf-server`."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> SlurmctldContainer:
        self.share.mkdir(parents=True, exist_ok=True)
        self.job_dir.mkdir(exist_ok=True)
        self.conf_path.write_text(self._conf)
        if not self.munge_key_path.exists():
            write_munge_key(self.munge_key_path)
        if self._users:
            (self.share / "site-users").mkdir(exist_ok=True)
            for db, lines in self._users.items():
                (self.share / "site-users" / db).write_text(lines)
        site = [arg for directory in self._site_dirs for arg in ("-v", f"{directory}:{directory}")]
        # srun/salloc in the container give slurmctld their host's name to answer at: make it resolve.
        labels = [arg for key, value in engine.session_labels().items() for arg in ("--label", f"{key}={value}")]
        self._docker("run", "-d", "--name", self.name, *labels, "--network", "host", "--hostname", "slurmctld",
                     "--add-host", "slurmctld:127.0.0.1",
                     "-v", f"{self.share}:{self.share}", *site, "-e", f"SHARE={self.share}",
                     "-e", f"SLURM_CONF={self.conf_path}", "--entrypoint", "sh", self.image, "-c", START)
        self._started = True
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_at = time.monotonic()  # slurmctld started a little before: waits from here are safe
        return self

    def stop(self) -> None:
        """Stop slurmctld (SIGTERM, then the engine's kill) and remove the container."""
        if not self._started:
            return
        self._docker("stop", "-t", "10", self.name, check=False)
        self._docker("rm", "-f", self.name, check=False)
        self._started = False

    def run(self, *argv: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """A command inside the controller's container (Slurm's clients), from the job dir."""
        result = self._docker("exec", "-w", str(self.job_dir), self.name, *argv, check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise ControllerError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def run_as(self, user: str, *argv: str, cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A command typed by ``user`` (a name the container knows) on this submit host, from
        ``cwd``, with a login's environment: uid, gid and groups from the container's files."""
        home = self._docker("exec", self.name, "getent", "passwd", user, check=False).stdout.split(":")
        login = {"HOME": home[5] if len(home) > 5 else "/", "USER": user, "LOGNAME": user, "SHELL": "/bin/bash"}
        env = [arg for key, value in login.items() for arg in ("-e", f"{key}={value}")]
        return self._docker("exec", "-u", user, "-w", str(cwd), *env, self.name, *argv, check=False,
                            timeout=timeout)

    def logs(self, tail: int = 60) -> str:
        result = self._docker("logs", "--tail", str(tail), self.name, check=False)
        return (result.stdout + result.stderr).strip()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while True:
            ping = self.run("scontrol", "ping", check=False, timeout=10)
            if ping.returncode == 0 and "UP" in ping.stdout:
                return
            state = self._docker("inspect", "-f", "{{.State.Running}}", self.name, check=False).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                raise ControllerError(f"slurmctld {self.version} did not start: {self.logs(20)}")
            time.sleep(0.2)

    def _docker(self, *argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self._docker_env}
        try:
            result = subprocess.run([docker_cli(), *argv], env=env, capture_output=True, text=True,
                                    timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise ControllerError(f"docker {argv[0]}: no answer in {timeout} s") from e
        if check and result.returncode != 0:
            raise ControllerError(f"docker {' '.join(argv[:3])}: {result.stderr.strip()}")
        return result


CONTAINER_SETTINGS = {
    **COMMON_SETTINGS,
    "SlurmUser": "slurm",
    "StateSaveLocation": "/var/lib/slurm/slurmctld",
    # What configless slurmd pods read too: paths inside their own image, nothing of the host.
    "SlurmdSpoolDir": "/var/spool/slurmd",
    "SlurmctldPidFile": "/run/slurmctld/slurmctld.pid",
}
"""slurm.conf of a containerised test controller, before the power-saving settings."""


def render_conf(version: str, *, cluster: str, port: int, log_dir: Path, nodes: str, node_ports: str,
                node_options: str = "CPUs=1 RealMemory=500", power: dict[str, str | None]) -> str:
    """slurm.conf for ``version``: the container settings, slurm/slurm.conf.power-saving as that
    release accepts it (testenv/slurm_versions.py) with ``power`` over it (hooks, timeouts; None
    leaves a setting out), and one CLOUD node line, node i on the i-th port of ``node_ports``
    (all on the host's network)."""
    settings = {"ClusterName": cluster, "SlurmctldHost": "localhost", "SlurmctldPort": str(port),
                **CONTAINER_SETTINGS, "SlurmctldLogFile": str(log_dir / "slurmctld.log")}
    settings.update(power_saving_settings(version))
    settings.update(power)
    lines = [f"# Rendered by testenv/ctld_container.py for Slurm {version}."]
    lines += [f"{key}={value}" for key, value in settings.items() if value is not None]
    lines.append(f"NodeName={nodes} {node_options} State=CLOUD Port={node_ports}")
    lines.append(f"PartitionName=elastic Nodes={nodes} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


BRIDGE_BIN = "/opt/slurm-k8s-bridge/bin"
"""Where the slurmctld image installs the bridge's console scripts (docker/slurmctld/Dockerfile)."""


class ContainerCluster:
    """The test environment's Slurm side (what testenv.env.Environment calls on SlurmCluster) for
    another Slurm release: slurmctld in its container, running the hooks the image installed.

    ``share`` is the environment's own directory: slurm.conf, the munge key and the bridge's
    config go there, and the bridge's kubeconfig, log and state already live there."""

    def __init__(self, version: str, *, share: Path, node_groups: Sequence[NodeGroup], timeouts: Timeouts,
                 docker_env: dict[str, str], site_dirs: Sequence[Path] = (),
                 users: dict[str, str] | None = None) -> None:
        """site_dirs, users: what makes the controller's container the site's submit host too
        (see SlurmctldContainer)."""
        if len(node_groups) != 1:
            raise ValueError("a containerised slurmctld gets one node group")
        self.version = version
        self.node_group = node_groups[0]
        self._share = share
        self._timeouts = timeouts
        self._docker_env = docker_env
        self._site_dirs = tuple(site_dirs)
        self._users = users
        self.controller: SlurmctldContainer | None = None

    def start(self) -> ContainerCluster:
        group = self.node_group
        port = free_ports(group.count + 1)
        hooks = {"ResumeProgram": "slurm-k8s-resume", "SuspendProgram": "slurm-k8s-suspend",
                 "ResumeFailProgram": "slurm-k8s-resume-fail", "PrologSlurmctld": "slurm-k8s-prolog"}
        power: dict[str, str | None] = {key: f"{BRIDGE_BIN}/{name}" for key, name in hooks.items()}
        power.update({key: str(value) for key, value in self._timeouts.settings().items()})
        power["SlurmctldParameters"] = self._timeouts.scan_parameters(
            power_saving_settings(self.version)["SlurmctldParameters"])
        conf = render_conf(self.version, cluster="testenv", port=port, log_dir=self.log_dir, nodes=group.hostlist,
                           node_ports=f"[{port + 1}-{port + group.count}]",
                           node_options=f"CPUs={group.cpus} RealMemory={group.real_memory}", power=power)
        self.controller = SlurmctldContainer(self.version, share=self._share, conf=conf, docker_env=self._docker_env,
                                             port=port, site_dirs=self._site_dirs, users=self._users).start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def _ctld(self) -> SlurmctldContainer:
        if self.controller is None:
            raise ControllerError("slurmctld not started")
        return self.controller

    @property
    def state_dir(self) -> Path:
        return self._share

    @property
    def conf_path(self) -> Path:
        return self._ctld.conf_path

    @property
    def log_dir(self) -> Path:
        return self._share / "log"

    @property
    def slurmctld_log(self) -> Path:
        return self.log_dir / "slurmctld.log"

    @property
    def slurmctld_address(self) -> str:
        return self._ctld.address

    @property
    def munge_key_path(self) -> Path:
        return self._ctld.munge_key_path

    @property
    def node_names(self) -> list[str]:
        return self.node_group.names

    def run(self, *argv: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self._ctld.run(*argv, check=check, timeout=timeout)

    def run_as(self, user: str, *argv: str, cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A Slurm client command typed by ``user`` on the submit host (the controller's container)."""
        return self._ctld.run_as(user, *argv, cwd=cwd, timeout=timeout)

    def node_states(self) -> dict[str, str]:
        """Short states as sinfo prints them: "idle~", "mix#", "alloc", "idle%"..."""
        out = self.run("sinfo", "--noheader", "--Node", "--format=%N %t").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def job_state(self, job_id: int | str) -> str:
        line = self.run("scontrol", "--oneliner", "show", "job", str(job_id)).stdout
        return dict(f.split("=", 1) for f in line.split() if "=" in f)["JobState"]

    def wait_until(self, condition: Callable[[], object], *, timeout: float, what: str,
                   interval: float = 0.2) -> float:
        """Poll ``condition`` until true; the seconds it took. Raises ControllerError on timeout."""
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > timeout:
                raise ControllerError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)
        return time.monotonic() - start

    def wait_for_first_scheduling_pass(self) -> None:
        """Jobs submitted in slurmctld's first 3 s are all scheduled at 3 s, whatever the config."""
        time.sleep(max(0.0, self._ctld.started_at + FIRST_SCHEDULING_PASS - time.monotonic()))
