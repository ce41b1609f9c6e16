"""A real Slurm controller (munged + slurmctld) for tests, on loopback, in a throw-away dir."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from testenv.slurm import processes
from testenv.slurm.config import (
    CGROUP_CONF, NVIDIA_MAJOR, PARTITION, ClusterConfig, Hooks, Layout, NodeGroup, Timeouts, gpu_devices,
    render_gres_conf, render_slurm_conf,
)

STRAY_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL for what the hooks started: slurmd and munged exit at
once on SIGTERM, slurmstepd ignores it (it outlives slurmd restarts by design)."""
FIRST_SCHEDULING_PASS = 3.2
"""Seconds after start when slurmctld 22.05 has read SchedulerParameters: it parses them in its
first scheduling pass, which waits for batch_sched_delay's built-in 3 s default."""
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the trailing NUL


DEFAULT_NODES = (NodeGroup(),)
NO_HOOKS = Hooks()
TEST_TIMEOUTS = Timeouts()


class SlurmClusterError(RuntimeError):
    """A daemon did not start, a client command failed, or a wait timed out."""


def _port_is_free(port: int) -> bool:
    # The daemons bind every address, so check the wildcard address.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, low: int = 20000, high: int = 32000) -> int:
    """First of `count` consecutive free ports, below Linux's ephemeral range (32768+)."""
    for _ in range(100):
        base = random.randrange(low, high - count)
        if all(_port_is_free(port) for port in range(base, base + count)):
            return base
    raise SlurmClusterError(f"no {count} consecutive free ports in [{low}, {high})")


def _write_munge_key(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as key:
        key.write(os.urandom(1024))


def _tail(log: Path, lines: int = 15) -> str:
    """The end of a daemon's log for an error message: stop() removes the file itself."""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError as e:
        return f"no log ({e})"
    return f"last lines of {log.name}:\n" + "\n".join(text)


def _check_state_dir(state_dir: Path) -> None:
    """munged refuses a socket under a directory others cannot traverse; say so up front."""
    socket_path = Layout(state_dir).munge_socket
    if len(str(socket_path)) > SOCKET_PATH_MAX:
        raise SlurmClusterError(f"state dir {state_dir} is too long for a unix socket path")
    for parent in state_dir.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise SlurmClusterError(
                f"state dir {state_dir}: {parent} is not o+x, munged would refuse its socket "
                "(pytest's tmp_path is 0700: leave state_dir unset to get one in /tmp)")


class SlurmCluster:
    """munged + `slurmctld -D` with CLOUD nodes, as children of this process.

    The nodes start powered down (idle~); the hooks given here bring them up. Use as a
    context manager, or call start() and stop(). stop() leaves no process and no directory.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        node_groups: Sequence[NodeGroup] = DEFAULT_NODES,
        hooks: Hooks = NO_HOOKS,
        timeouts: Timeouts = TEST_TIMEOUTS,
        start_timeout: float = 30.0,
        stop_grace: float = 10.0,
        gpu_files: str | None = None,
        gres_conf: str | None = None,
        slurm_user: str = "root",
        prolog_wrapper: bool = True,
        cgroups: bool = False,
        lua_plugins: bool = False,
    ) -> None:
        """state_dir: created if missing and removed at stop(); default: a new dir in /tmp.
        gpu_files: what gres.conf's File= names for GPU nodes (see ClusterConfig.gpu_files);
        gres_conf: the whole gres.conf instead of the rendered one (e.g. an example's);
        slurm_user: SlurmUser, whom slurmctld runs its hooks as (root suits hooks that start
        slurmd on this host, testenv/slurm/hosthooks.py; the bridge's run as a site's do);
        prolog_wrapper: run PrologSlurmctld through a wrapper that sets SLURM_CONF, which
        slurmctld does not give it (False for a prolog that finds slurm.conf itself, as
        bridge/prolog.py does);
        cgroups: the cgroup plugins and a cgroup.conf (ClusterConfig.cgroups);
        lua_plugins: enable Slurm's job_submit and cli_filter Lua plugins, starting with scripts
        that accept everything until :meth:`install_lua` puts the bridge's in place."""
        self._lua_plugins = lua_plugins
        self._requested_dir = Path(state_dir) if state_dir else None
        self._node_groups = tuple(node_groups)
        self._gpu_files = gpu_files
        self._gres_conf = gres_conf
        self._slurm_user = slurm_user
        self._prolog_wrapper = prolog_wrapper
        self._cgroups = cgroups
        self._hooks = hooks
        self._timeouts = timeouts
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._config: ClusterConfig | None = None
        self._munged: subprocess.Popen[bytes] | None = None
        self._slurmctld: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> SlurmCluster:
        if self._config is not None:
            raise SlurmClusterError("cluster already started")
        state_dir = self._make_state_dir()
        try:
            self._config = self._configure(state_dir)
            self._write_files()
            self._start_munged()
            self._start_slurmctld()
        except BaseException:
            self.stop()
            shutil.rmtree(state_dir, ignore_errors=True)  # if it failed before _config was set
            raise
        return self

    def stop(self) -> None:
        """Stop the daemons and everything the hooks started, then remove the state dir.

        "Everything the hooks started" is every process whose command line or environment
        names the state dir: slurmctld gives its hooks SLURM_CONF (the prolog through our
        wrapper), and nodes, job steps and jobs inherit it or name the dir themselves."""
        if self._config is None:
            return
        for proc in (self._slurmctld, self._munged):  # slurmctld first: no new hooks
            if proc is not None:
                processes.stop_child(proc, grace=self._stop_grace)
        # Nodes, job steps and hooks in flight; a hook may start a node while we look.
        for _ in range(3):
            strays = processes.processes_using(self.state_dir)
            if not strays:
                break
            processes.terminate(strays, grace=STRAY_GRACE)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self._slurmctld = self._munged = self._config = None

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _make_state_dir(self) -> Path:
        if self._requested_dir is None:
            return Path(tempfile.mkdtemp(prefix="slurm-testenv-", dir="/tmp"))
        self._requested_dir.mkdir(parents=True, exist_ok=True)
        return self._requested_dir.resolve()

    def _configure(self, state_dir: Path) -> ClusterConfig:
        node_count = sum(group.count for group in self._node_groups)
        base, layout, hooks = free_ports(node_count + 1), Layout(state_dir), self._hooks
        if hooks.prolog_slurmctld is not None and self._prolog_wrapper:
            hooks = dataclasses.replace(hooks, prolog_slurmctld=layout.prolog_wrapper)
        return ClusterConfig(
            layout=layout, slurmctld_port=base, node_base_port=base + 1,
            node_groups=self._node_groups, hooks=hooks, timeouts=self._timeouts, gpu_files=self._gpu_files,
            slurm_user=self._slurm_user, cgroups=self._cgroups, lua_plugins=self._lua_plugins)

    def _write_files(self) -> None:
        cfg = self.config
        _check_state_dir(self.state_dir)
        for directory in cfg.layout.directories():
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        for node in cfg.node_names:
            cfg.layout.slurmd_spool_dir(node).mkdir(exist_ok=True)
            # There already, as in a log directory a site mounts: the slurmd image links only a
            # missing SlurmdLogFile to the container's log, and these are read on this host.
            cfg.layout.slurmd_log(node).touch()
        for directory in cfg.layout.slurm_user_directories():
            shutil.chown(directory, cfg.slurm_user, cfg.slurm_user)
        _write_munge_key(cfg.layout.munge_key)
        cfg.layout.slurm_conf.write_text(render_slurm_conf(cfg))
        if cfg.cgroups:
            cfg.layout.cgroup_conf.write_text(CGROUP_CONF)
        self._write_prolog_wrapper()
        if cfg.lua_plugins:  # slurmctld refuses to start without them
            from types import SimpleNamespace

            from bridge import slurmlua

            for kind in slurmlua.KINDS:
                cfg.layout.lua_script(kind).write_text(slurmlua.render(SimpleNamespace(nodesets=[]), kind))
        if cfg.gres_nodes:
            cfg.layout.gres_conf.write_text(self._gres_conf or render_gres_conf(cfg))
            for minor, device in enumerate(gpu_devices(cfg)):
                os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(NVIDIA_MAJOR, minor))

    def _write_prolog_wrapper(self) -> None:
        """slurmctld runs PrologSlurmctld with a fresh environment that lacks SLURM_CONF, so its
        Slurm commands would read /etc/slurm/slurm.conf: right on a site, wrong here."""
        prolog = self._hooks.prolog_slurmctld
        if prolog is None or not self._prolog_wrapper:
            return
        wrapper = self.layout.prolog_wrapper
        wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={shlex.quote(str(self.conf_path))}\n'
                           f'export SLURM_CONF\nexec {shlex.quote(str(prolog))} "$@"\n')
        wrapper.chmod(0o755)

    def _start_munged(self) -> None:
        lay = self.layout
        self._munged = processes.spawn(
            ["munged", "--foreground", f"--key-file={lay.munge_key}",
             f"--socket={lay.munge_socket}", f"--pid-file={lay.run_dir / 'munged.pid'}",
             f"--seed-file={lay.run_dir / 'munged.seed'}"],  # logs to stderr when -F
            log=lay.munged_log, env=self.env, cwd=lay.log_dir)
        self._wait(lambda: lay.munge_socket.exists(), "munged's socket", self._munged,
                   lay.munged_log)

    def kill_slurmctld(self) -> None:
        """SIGKILL this cluster's own slurmctld (a crash: no state saved beyond what it wrote)."""
        assert self._slurmctld is not None
        self._slurmctld.kill()
        self._slurmctld.wait(timeout=30)

    def restart_slurmctld(self) -> None:
        """Start slurmctld again on the same state dir (it recovers its jobs and nodes, as
        systemd's restart would) and wait until it answers."""
        assert self._slurmctld is not None and self._slurmctld.poll() is not None, "slurmctld still running"
        self._start_slurmctld()

    def _start_slurmctld(self) -> None:
        lay = self.layout
        self._slurmctld = processes.spawn(
            ["slurmctld", "-D", "-f", str(lay.slurm_conf)],
            log=lay.log_dir / "slurmctld.stderr", env=self.env, cwd=lay.log_dir)
        self._started_at = time.monotonic()
        self._wait(self._controller_answers, "slurmctld to answer scontrol ping",
                   self._slurmctld, lay.log_dir / "slurmctld.stderr")

    def install_lua(self, scripts: dict[str, str]) -> None:
        """Put ``{kind: text}`` in place of the Lua scripts, as an admin installs them
        (slurmctld reloads job_submit.lua by its mtime; ``slurmlua.install`` makes it newer);
        ``scontrol reconfigure`` then serves the new cli_filter.lua to configless slurmd (the
        pods' srun) too."""
        from bridge import slurmlua

        for kind, text in scripts.items():
            slurmlua.install(text, str(self.layout.lua_script(kind)))
        self.run("scontrol", "reconfigure")

    def _controller_answers(self) -> bool:
        ping = self.run("scontrol", "ping", check=False, timeout=10)
        return ping.returncode == 0 and "is UP" in ping.stdout

    def _wait(self, ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes],
              log: Path) -> None:
        deadline, pause = time.monotonic() + self._start_timeout, 0.02
        while not ready():
            if proc.poll() is not None:
                raise SlurmClusterError(f"{log.stem} exited ({proc.returncode}) while "
                                        f"waiting for {what}; {_tail(log)}")
            if time.monotonic() > deadline:
                raise SlurmClusterError(f"timed out waiting for {what}; {_tail(log)}")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    # ---- what tests and other test-environment parts use ----------------------------------------

    @property
    def config(self) -> ClusterConfig:
        if self._config is None:
            raise SlurmClusterError("cluster not started")
        return self._config

    @property
    def layout(self) -> Layout:
        return self.config.layout

    @property
    def state_dir(self) -> Path:
        return self.layout.state_dir

    @property
    def conf_path(self) -> Path:
        return self.layout.slurm_conf

    @property
    def env(self) -> dict[str, str]:
        """A full environment for Slurm client commands: ours, minus any outer job's SLURM_*."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.conf_path)
        return env

    @property
    def slurmctld_port(self) -> int:
        return self.config.slurmctld_port

    @property
    def slurmctld_address(self) -> str:
        """host:port for `slurmd --conf-server`."""
        return f"127.0.0.1:{self.slurmctld_port}"

    @property
    def munge_key_path(self) -> Path:
        return self.layout.munge_key

    @property
    def munge_socket(self) -> Path:
        return self.layout.munge_socket

    @property
    def node_groups(self) -> tuple[NodeGroup, ...]:
        return self.config.node_groups

    @property
    def node_names(self) -> list[str]:
        return self.config.node_names

    @property
    def node_ports(self) -> dict[str, int]:
        """The port each node's slurmd listens on (slurm.conf Port=, one host for all)."""
        return self.config.node_ports()

    @property
    def partition(self) -> str:
        return PARTITION

    @property
    def log_dir(self) -> Path:
        return self.layout.log_dir

    @property
    def slurmctld_log(self) -> Path:
        return self.layout.slurmctld_log

    @property
    def munged_log(self) -> Path:
        return self.layout.munged_log

    def slurmd_log(self, node: str) -> Path:
        return self.layout.slurmd_log(node)

    def slurmd_spool_dir(self, node: str) -> Path:
        return self.layout.slurmd_spool_dir(node)

    @property
    def pids(self) -> dict[str, int]:
        """The daemons this object supervises, by name."""
        procs = {"munged": self._munged, "slurmctld": self._slurmctld}
        return {name: p.pid for name, p in procs.items() if p is not None and p.poll() is None}

    def run(self, *args: str, check: bool = True,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster, from its job directory."""
        try:
            result = subprocess.run(list(args), env=self.env, cwd=self.layout.job_dir,
                                    capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise SlurmClusterError(f"{' '.join(args)}: no answer in {timeout} s") from e
        if check and result.returncode != 0:
            raise SlurmClusterError(
                f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def sinfo_nodes(self) -> list[dict[str, Any]]:
        """`sinfo --json` node records of this cluster (22.05 ignores sinfo's filters)."""
        nodes = json.loads(self.run("sinfo", "--json").stdout)["nodes"]
        return [n for n in nodes if n["name"] in set(self.node_names)]

    def node_states(self) -> dict[str, str]:
        """Short states as sinfo prints them: "idle~", "mix#", "alloc", "idle%"..."""
        out = self.run("sinfo", "--noheader", "--Node", "--format=%N %t").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def job_state(self, job_id: int | str) -> str:
        """JobState of one job, e.g. PENDING, CONFIGURING, RUNNING, COMPLETED."""
        line = self.run("scontrol", "--oneliner", "show", "job", str(job_id)).stdout
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        return fields["JobState"]

    def wait_for_first_scheduling_pass(self) -> None:
        """Jobs submitted in the first 3 s after start are all scheduled at 3 s, whatever the
        config says; after that, within ~1 s. Latency measurements start after this."""
        time.sleep(max(0.0, self._started_at + FIRST_SCHEDULING_PASS - time.monotonic()))

    def wait_until(self, condition: Callable[[], bool], *, timeout: float, what: str,
                   interval: float = 0.2) -> float:
        """Poll `condition` until true; returns the seconds it took. Raises on timeout."""
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > timeout:
                raise SlurmClusterError(f"timed out after {timeout} s waiting for {what}\n{self._diagnosis()}")
            time.sleep(interval)
        return time.monotonic() - start

    def _diagnosis(self) -> str:
        """What a wait that timed out shows: the nodes' states and the ends of slurmctld's log and
        of the hooks' own (stop() removes them)."""
        try:
            parts = [f"nodes: {self.node_states()}"]
        except Exception as e:  # noqa: BLE001 (a failed wait's message, whatever Slurm says now)
            parts = [f"nodes: not read ({e})"]
        for log in (self.slurmctld_log, *sorted(self.log_dir.glob("hook-*.log"))):
            parts.append(_tail(log, 25))
        return "\n".join(parts)
