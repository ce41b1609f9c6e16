"""The test cluster's configuration: where everything lives, and slurm.conf rendered from it.

The power-saving settings come from the snippet sites deploy (slurm/slurm.conf.power-saving);
only the hook paths and the timeouts are replaced, so the tests run what users run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SNIPPET = Path(__file__).resolve().parents[2] / "slurm" / "slurm.conf.power-saving"
CLOUD_NODES_EXAMPLE = SNIPPET.with_name("slurm.conf.cloud-nodes")

HOOK_KEYS = ("ResumeProgram", "SuspendProgram", "ResumeFailProgram", "PrologSlurmctld")
TIMEOUT_KEYS = ("SuspendTime", "ResumeTimeout", "SuspendTimeout")
CALLER_KEYS = frozenset(HOOK_KEYS + TIMEOUT_KEYS)
"""Snippet keys whose value the test environment takes from its caller; the rest are verbatim."""

PARTITION = "elastic"
NVIDIA_MAJOR = 195  # char device major of /dev/nvidia*: slurmd reads it for gres File=
POD_GPU_FILES = "/dev/slurm-gpu"
"""Where a slurmd pod finds its GPUs: the slurmd entrypoint links the pod's granted devices as
/dev/slurm-gpu0..N-1 (docs/hpc-nodes.md, gres.conf), so one gres.conf line fits every pod."""


@dataclass(frozen=True)
class NodeGroup:
    """Powered-down CLOUD nodes sharing one NodeName line: `<prefix>1` ... `<prefix><count>`."""

    prefix: str = "elastic"
    count: int = 4
    cpus: int = 1
    """Slurm schedules by these, not the host's: the test config sets config_overrides."""
    real_memory: int = 1000
    """MiB."""
    gres: str = ""
    """Slurm's Gres= value, e.g. "gpu:2" or "gpu:a100:2"; only gpu is supported."""
    features: tuple[str, ...] = ()
    weight: int | None = None
    """Slurm allocates lower weights first."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z-]*", self.prefix):
            raise ValueError(f"node prefix {self.prefix!r}: lowercase letters and '-' only")
        if self.count < 1:
            raise ValueError(f"node group {self.prefix!r}: count must be >= 1")
        if self.gres and not re.fullmatch(r"gpu(:[\w.-]+)?:\d+", self.gres):
            raise ValueError(f"node group {self.prefix!r}: gres {self.gres!r} is not gpu[:type]:N")

    @property
    def names(self) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(1, self.count + 1)]

    @property
    def hostlist(self) -> str:
        return f"{self.prefix}[1-{self.count}]" if self.count > 1 else f"{self.prefix}1"

    @property
    def gpus(self) -> int:
        return int(self.gres.rsplit(":", 1)[1]) if self.gres else 0


@dataclass(frozen=True)
class Hooks:
    """Absolute paths of the programs slurmctld runs; None leaves the setting out."""

    resume: Path | None = None
    suspend: Path | None = None
    resume_fail: Path | None = None
    prolog_slurmctld: Path | None = None
    prolog: Path | None = None
    """slurmd's Prolog and Epilog: run by each node's slurmd (in its pod), not by slurmctld."""
    epilog: Path | None = None

    def settings(self) -> dict[str, Path | None]:
        values = (self.resume, self.suspend, self.resume_fail, self.prolog_slurmctld)
        return dict(zip(HOOK_KEYS, values, strict=True))

    def node_settings(self) -> dict[str, str]:
        return {key: str(path) for key, path in (("Prolog", self.prolog), ("Epilog", self.epilog)) if path}


@dataclass(frozen=True)
class Timeouts:
    """Seconds; short by default so a resume/suspend round trip fits in a test."""

    suspend_time: int = 5
    resume_timeout: int = 30
    suspend_timeout: int = 2
    power_save_interval: int = 1
    """SlurmctldParameters power_save_interval: the power-save thread's scan when no node changed
    (1 as the README's slurm.conf; Slurm's default is 10). A node change (an allocation) brings
    the scan forward to the next second, but never sooner than ``power_save_min_interval``."""
    power_save_min_interval: int = 0
    """SlurmctldParameters power_save_min_interval: the least time between two scans, so the
    longest a job's allocation may wait before slurmctld calls ResumeProgram (0 as the README's
    slurm.conf and Slurm's default)."""

    def settings(self) -> dict[str, int]:
        values = (self.suspend_time, self.resume_timeout, self.suspend_timeout)
        return dict(zip(TIMEOUT_KEYS, values, strict=True))

    def scan_parameters(self, parameters: str) -> str:
        """SlurmctldParameters ``parameters`` with this power-save scan's two settings."""
        scans = {"power_save_interval": self.power_save_interval,
                 "power_save_min_interval": self.power_save_min_interval}
        return ",".join(f"{key}={scans[key]}" if (key := p.split("=", 1)[0]) in scans else p
                        for p in parameters.split(","))


@dataclass(frozen=True)
class Layout:
    """Every file the cluster uses, inside one state directory (removed at stop)."""

    state_dir: Path

    @property
    def slurm_conf(self) -> Path:
        return self.state_dir / "slurm.conf"

    @property
    def gres_conf(self) -> Path:
        return self.state_dir / "gres.conf"

    @property
    def cgroup_conf(self) -> Path:
        """Beside slurm.conf: slurmctld serves it to configless slurmd with slurm.conf."""
        return self.state_dir / "cgroup.conf"

    @property
    def munge_key(self) -> Path:
        return self.state_dir / "munge.key"

    @property
    def munge_dir(self) -> Path:
        """munged insists this is o+x (0755)."""
        return self.state_dir / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket.2"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def munged_log(self) -> Path:
        return self.log_dir / "munged.log"

    @property
    def slurmctld_log(self) -> Path:
        return self.log_dir / "slurmctld.log"

    def slurmd_log(self, node: str) -> Path:
        """slurm.conf gets this with node "%n", which each slurmd expands to its name."""
        return self.log_dir / f"slurmd-{node}.log"

    def slurmd_spool_dir(self, node: str) -> Path:
        """Like slurmd_log: one per node, as several slurmd share this host."""
        return self.spool_dir / node

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def ctld_state_dir(self) -> Path:
        return self.state_dir / "ctld"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def dev_dir(self) -> Path:
        """Fake /dev/nvidia* character devices for gres.conf's File=."""
        return self.state_dir / "dev"

    @property
    def prolog_wrapper(self) -> Path:
        """Runs the caller's PrologSlurmctld with SLURM_CONF set (see SlurmCluster)."""
        return self.state_dir / "hooks" / "prolog-slurmctld"

    def lua_script(self, kind: str) -> Path:
        """job_submit.lua or cli_filter.lua: Slurm reads them from slurm.conf's directory."""
        return self.state_dir / f"{kind}.lua"

    @property
    def job_dir(self) -> Path:
        """Working directory of client commands: batch output files land here."""
        return self.state_dir / "jobs"

    def directories(self) -> list[Path]:
        return [self.state_dir, self.munge_dir, self.log_dir, self.ctld_state_dir,
                self.spool_dir, self.run_dir, self.dev_dir, self.job_dir,
                self.prolog_wrapper.parent]

    def slurm_user_directories(self) -> list[Path]:
        """Where slurmctld writes once it runs as SlurmUser: its state and log files (its pid
        file it writes as root, before it changes user)."""
        return [self.log_dir, self.ctld_state_dir]


@dataclass(frozen=True)
class ClusterConfig:
    """What a test cluster is: its nodes, hooks, timeouts, ports and where it lives."""

    layout: Layout
    slurmctld_port: int
    node_base_port: int
    """Nodes listen on consecutive ports from here, in node_groups order (all on one host)."""
    node_groups: tuple[NodeGroup, ...] = (NodeGroup(),)
    hooks: Hooks = field(default_factory=Hooks)
    timeouts: Timeouts = field(default_factory=Timeouts)
    gpu_files: str | None = None
    """gres.conf File= prefix, e.g. POD_GPU_FILES for nodes run as pods; None: fake devices in the
    state dir, for nodes run on this host (hostnode.py)."""
    slurm_user: str = "root"
    """SlurmUser: slurmctld (started as root) runs as this user, and so do its hooks."""
    cgroups: bool = False
    """Slurm's defaults as a site runs them: ProctrackType=proctrack/cgroup,
    TaskPlugin=task/cgroup,task/affinity, memory a consumable resource, and CGROUP_CONF. Only
    for slurmd in pods that may create cgroups (nodeset ``cgroups``, the Docker runtime): the
    host's slurmd would put its jobs' cgroups in this machine's own hierarchy."""
    lua_plugins: bool = False
    """JobSubmitPlugins=lua and CliFilterPlugins=lua, with job_submit.lua and cli_filter.lua
    beside slurm.conf (what ``slurm-k8s-bridge slurm-lua`` generates, docs/hpc-nodes.md)."""

    def __post_init__(self) -> None:
        prefixes = [g.prefix for g in self.node_groups]
        if not prefixes or len(set(prefixes)) != len(prefixes):
            raise ValueError(f"node groups need distinct prefixes, got {prefixes}")
        for key, path in self.hooks.settings().items():
            if path is not None and not Path(path).is_absolute():
                raise ValueError(f"{key} must be an absolute path (hooks run without PATH): {path}")

    @property
    def node_names(self) -> list[str]:
        return [name for group in self.node_groups for name in group.names]

    def node_ports(self) -> dict[str, int]:
        return {name: self.node_base_port + i for i, name in enumerate(self.node_names)}

    @property
    def gres_nodes(self) -> tuple[NodeGroup, ...]:
        return tuple(g for g in self.node_groups if g.gres)


def read_settings(path: Path = SNIPPET) -> dict[str, str]:
    """The `Key=Value` lines of a slurm.conf fragment, in order; comments and blanks skipped."""
    settings: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or " " in key.strip():
            raise ValueError(f"{path}:{number}: expected Key=Value, got {raw!r}")
        settings[key.strip()] = value.strip()
    return settings


def _node_group(line: str) -> NodeGroup:
    fields = dict(part.split("=", 1) for part in line.split())
    match = re.fullmatch(r"([a-z-]+)(?:\[1-(\d+)\]|1)", fields["NodeName"])
    if not match:
        raise ValueError(f"NodeName={fields['NodeName']}: expected prefix[1-N] or prefix1")
    weight = fields.get("Weight")
    return NodeGroup(
        prefix=match[1], count=int(match[2] or 1), cpus=int(fields.get("CPUs", 1)),
        real_memory=int(fields.get("RealMemory", 1)), gres=fields.get("Gres", ""),
        features=tuple(filter(None, fields.get("Features", "").split(","))),
        weight=int(weight) if weight else None)


def read_node_groups(path: Path = CLOUD_NODES_EXAMPLE) -> tuple[NodeGroup, ...]:
    """The NodeName lines of a slurm.conf fragment, e.g. to run the documented example."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return tuple(_node_group(line) for line in lines if line.startswith("NodeName="))


COMMON_SETTINGS = {
    "SlurmdUser": "root",
    "AuthType": "auth/munge",
    # The cgroup plugins need mounts this VM (and a container) lacks.
    "ProctrackType": "proctrack/linuxproc",
    "TaskPlugin": "task/none",
    "MpiDefault": "none",
    "SlurmctldDebug": "info",
    "SlurmdDebug": "info",
    "DebugFlags": "Power",
    "MailProg": "/bin/true",
    "SelectType": "select/cons_tres",
    "SelectTypeParameters": "CR_Core",
    # Every node runs on this 2-core host: schedule by the node lines, not the host.
    "SlurmdParameters": "config_overrides",
    # Start batch jobs at submit time (default delay 3 s) and rescan often.
    "SchedulerParameters": "batch_sched_delay=0,sched_interval=10,bf_interval=5",
    "KillWait": "5",
}
"""slurm.conf of every test controller, the host's (below) and a container's
(testenv/ctld_container.py): each adds its own paths, users and ports."""


def _base_settings(cfg: ClusterConfig) -> dict[str, str]:
    """What makes a real Slurm run as root from one temp dir, all nodes on one host."""
    lay = cfg.layout
    settings = {
        "ClusterName": "testenv",
        "SlurmctldHost": "localhost",
        "SlurmctldPort": str(cfg.slurmctld_port),
        "SlurmUser": cfg.slurm_user,
        **COMMON_SETTINGS,
        "AuthInfo": f"socket={lay.munge_socket}",
        "StateSaveLocation": str(lay.ctld_state_dir),
        "SlurmdSpoolDir": str(lay.slurmd_spool_dir("%n")),
        "SlurmctldPidFile": str(lay.run_dir / "slurmctld.pid"),
        "SlurmdPidFile": str(lay.run_dir / "slurmd-%n.pid"),
        "SlurmctldLogFile": str(lay.slurmctld_log),
        "SlurmdLogFile": str(lay.slurmd_log("%n")),
    }
    if cfg.gres_nodes:
        settings["GresTypes"] = "gpu"
    if cfg.cgroups:
        settings.update(ProctrackType="proctrack/cgroup", TaskPlugin="task/cgroup,task/affinity",
                        SelectTypeParameters="CR_Core_Memory")
    if cfg.lua_plugins:
        settings["JobSubmitPlugins"] = "lua"
        settings["CliFilterPlugins"] = "lua"
    settings.update(cfg.hooks.node_settings())
    return settings


def _power_saving_settings(cfg: ClusterConfig, snippet: Path) -> dict[str, str]:
    """The site snippet with the caller's hook paths and timeouts in place of the site's."""
    settings = read_settings(snippet)
    missing = CALLER_KEYS - settings.keys()
    if missing:
        raise ValueError(f"{snippet}: lacks {sorted(missing)}, which the test cluster sets")
    for key, path in cfg.hooks.settings().items():
        if path is None:
            del settings[key]
        else:
            settings[key] = str(path)
    for key, seconds in cfg.timeouts.settings().items():
        settings[key] = str(seconds)
    settings["SlurmctldParameters"] = cfg.timeouts.scan_parameters(settings["SlurmctldParameters"])
    return settings


def _node_line(group: NodeGroup, first_port: int) -> str:
    parts = [f"NodeName={group.hostlist}", f"CPUs={group.cpus}",
             f"RealMemory={group.real_memory}"]
    if group.gres:
        parts.append(f"Gres={group.gres}")
    if group.features:
        parts.append(f"Features={','.join(group.features)}")
    if group.weight is not None:
        parts.append(f"Weight={group.weight}")
    last_port = first_port + group.count - 1
    port = f"[{first_port}-{last_port}]" if group.count > 1 else str(first_port)
    parts += ["State=CLOUD", f"Port={port}"]
    return " ".join(parts)


def _node_lines(cfg: ClusterConfig) -> list[str]:
    lines, port = [], cfg.node_base_port
    for group in cfg.node_groups:
        lines.append(_node_line(group, port))
        port += group.count
    return lines


CGROUP_CONF = """\
# Generated by testenv/slurm: a job may use the memory it asked for, no more, and no swap.
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
"""


def render_slurm_conf(cfg: ClusterConfig, snippet: Path = SNIPPET) -> str:
    base = _base_settings(cfg)
    power = _power_saving_settings(cfg, snippet)
    clash = base.keys() & power.keys()
    if clash:
        raise ValueError(f"{snippet} sets {sorted(clash)}, which the test cluster owns")
    hostlists = ",".join(g.hostlist for g in cfg.node_groups)
    lines = ["# Generated by testenv/slurm for a throw-away test cluster.", ""]
    lines += [f"{k}={v}" for k, v in base.items()]
    lines += ["", f"# From {snippet.name}, hooks and timeouts from the test."]
    lines += [f"{k}={v}" for k, v in power.items()]
    lines += ["", *_node_lines(cfg)]
    lines.append(f"PartitionName={PARTITION} Nodes={hostlists} Default=YES "
                 "MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def gpu_devices(cfg: ClusterConfig) -> list[Path]:
    """The fake device files gres.conf points at: one per GPU of the largest GPU node (none when
    the nodes' own devices are named: a pod gets them from the device plugin)."""
    if cfg.gpu_files is not None:
        return []
    most = max((g.gpus for g in cfg.gres_nodes), default=0)
    return [cfg.layout.dev_dir / f"nvidia{i}" for i in range(most)]


def render_gres_conf(cfg: ClusterConfig) -> str:
    """One line per GPU node group. Without File= slurmd registers INVALID_REG and drains."""
    where = f"{cfg.gpu_files}N" if cfg.gpu_files else "in the state dir"
    lines = [f"# Generated by testenv/slurm: GPU device files {where}."]
    for group in cfg.gres_nodes:
        last = group.gpus - 1
        prefix = cfg.gpu_files or str(cfg.layout.dev_dir / "nvidia")
        files = f"{prefix}[0-{last}]" if last else f"{prefix}0"
        gpu_type = group.gres.split(":")[1] if group.gres.count(":") == 2 else ""
        type_part = f" Type={gpu_type}" if gpu_type else ""
        lines.append(f"NodeName={group.hostlist} Name=gpu{type_part} File={files}")
    return "\n".join(lines) + "\n"
