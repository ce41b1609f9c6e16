"""``slurm-k8s-bridge check``: the preflight an admin runs on the slurmctld host.

Each finding is one line, ``OK``, ``WARN`` or ``FAIL``, naming what was looked at and, for a
problem, what a job would suffer and what to change. Every problem here was once found only by
a job that never started (issue 9): a hook SlurmUser cannot execute (exit 126, every job waits
ResumeTimeout), a SlurmctldHost the pods cannot reach, a munge socket the pods do not have,
cgroup plugins that fail every job while Slurm shows it COMPLETED.

slurm.conf is read by asking slurmctld (``scontrol show config``: stable text, and the values
slurmctld actually runs with, defaults included), never by parsing the file. Nothing here is
on a hook's path.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import math
import os
import pwd
import re
import socket
import stat
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bridge import hostlist
from bridge.errors import BridgeError
from bridge.skew import image_skew
from bridge.slurmversion import SlurmVersion

EXIT_FAILED = 78
"""EX_CONFIG: at least one finding is FAIL."""
MUNGE_SOCKET = "/run/munge/munge.socket.2"
"""Where the image's munged listens, and where a configless slurmd looks before it has a config."""
HOOK_KEYS = {"ResumeProgram": "FAIL", "SuspendProgram": "FAIL", "ResumeFailProgram": "FAIL",
             "PrologSlurmctld": "WARN"}
"""The programs slurmctld runs, and how bad it is when one is not set."""

Status = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True)
class Finding:
    status: Status
    topic: str
    message: str

    def line(self) -> str:
        return f"{self.status:<4} {self.topic}: {self.message}"


@dataclass(frozen=True)
class Account:
    """Who slurmctld runs the hooks as: the uid and every group the kernel checks."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def of(cls, name: str) -> Account:
        """Raises KeyError: no such user."""
        entry = pwd.getpwnam(name)
        groups = {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(name, entry.pw_uid, frozenset({entry.pw_gid, *groups}))


# ---- who may use a path ---------------------------------------------------------------------

READ, WRITE, EXECUTE = 4, 2, 1
_WORDS = {READ: "read", WRITE: "write", EXECUTE: "execute"}


def _allowed(st: os.stat_result, who: Account, want: int) -> bool:
    """The kernel's mode-bit check (ACLs and security modules not considered)."""
    if who.uid == 0:  # root may do anything, except execute a file no one may execute
        return not (want & EXECUTE) or stat.S_ISDIR(st.st_mode) or bool(st.st_mode & 0o111)
    if st.st_uid == who.uid:
        bits = st.st_mode >> 6
    elif st.st_gid in who.gids:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & want == want


def _mode_words(want: int) -> str:
    return "+".join(word for bit, word in _WORDS.items() if want & bit)


def access_problem(path: str | Path, who: Account, want: int) -> str | None:
    """Why ``who`` cannot ``want`` (READ|WRITE|EXECUTE bits) the file at ``path``, walking it as
    the kernel does: every directory on the way, through every symlink (a venv's ``python`` is
    a link into wherever its Python lives), must be searchable. None when nothing stops him."""
    current, parts, hops = Path("/"), list(Path(path).parts[1:]), 0
    if not Path(path).is_absolute():
        return f"{path} is not an absolute path (slurmctld runs hooks with no PATH)"
    while parts:
        part = parts.pop(0)
        if not _allowed(os.stat(current), who, EXECUTE):
            return f"{who.name} cannot enter {current} ({_describe(current)})"
        if part == "..":
            current = current.parent
            continue
        candidate = current / part
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return f"{candidate} does not exist"
        except OSError as e:
            return f"{candidate}: {e.strerror}"
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                return f"{path}: too many levels of symbolic links"
            target = Path(os.readlink(candidate))
            if target.is_absolute():
                current = Path("/")
            parts = list(target.parts[1:] if target.is_absolute() else target.parts) + parts
        else:
            current = candidate
    if not _allowed(os.stat(current), who, want):
        return f"{who.name} cannot {_mode_words(want)} {current} ({_describe(current)})"
    return None


def _describe(path: Path) -> str:
    st = os.stat(path)
    return f"mode {stat.filemode(st.st_mode)}, owner {_name(pwd.getpwuid, st.st_uid)}:{_name(grp.getgrgid, st.st_gid)}"


def _name(lookup: Callable[[int], Any], number: int) -> str:
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def interpreter(path: str | Path) -> str | None:
    """The ``#!`` interpreter of a script; None for a binary or an unreadable file."""
    try:
        with open(path, "rb") as file:
            first = file.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return words[0] if words else None


def program_findings(key: str, program: str, who: Account) -> list[Finding]:
    """A hook slurmctld runs as ``who``: the file, and the interpreter its ``#!`` names."""
    problem = access_problem(program, who, READ | EXECUTE)
    shell = interpreter(program) if problem is None else None
    if shell is not None and os.path.basename(shell) == "env":
        return [Finding("FAIL", key, f"{program} starts with #!{shell}, which looks its interpreter up in PATH; "
                                     f"slurmctld runs hooks with no PATH: install into a venv (README step 1)")]
    if shell is not None:
        problem = access_problem(shell, who, EXECUTE)
        if problem is not None:
            problem = f"its interpreter {shell}: {problem}"
    if problem is not None:
        return [Finding("FAIL", key, f"{program}: {problem}; slurmctld runs it as {who.name} and it "
                                     f"would exit 126, so every job waits ResumeTimeout")]
    shell = interpreter(program)
    via = f" (interpreter {os.path.realpath(shell)})" if shell else ""
    return [Finding("OK", key, f"{program} runs as {who.name}{via}")]


# ---- slurm.conf, as slurmctld runs it -------------------------------------------------------

def parse_show_config(text: str) -> dict[str, str]:
    """``scontrol show config`` lines ``Key = Value`` as a dict (the first of a repeated key)."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep and key.strip() and " " not in key.strip():
            settings.setdefault(key.strip(), value.strip())
    return settings


def read_slurm_config(bin_dir: str, *, timeout: float = 10.0) -> dict[str, str]:
    """Raises BridgeError: slurmctld did not answer."""
    return parse_show_config(_scontrol(bin_dir, "show", "config", timeout=timeout))


def parse_partitions(text: str) -> list[dict[str, str]]:
    """``scontrol --oneliner show partition``: one ``Key=Value ...`` dict per partition (names,
    hostlists and the values read here hold no spaces)."""
    return [dict(word.split("=", 1) for word in line.split() if "=" in word)
            for line in text.splitlines() if line.startswith("PartitionName=")]


def read_partitions(bin_dir: str, *, timeout: float = 10.0) -> list[dict[str, str]]:
    """Raises BridgeError: slurmctld did not answer."""
    return parse_partitions(_scontrol(bin_dir, "--oneliner", "show", "partition", timeout=timeout))


def _scontrol(bin_dir: str, *args: str, timeout: float) -> str:
    return _command(bin_dir, "scontrol", *args, timeout=timeout)


def _command(bin_dir: str, name: str, *args: str, timeout: float) -> str:
    program = str(Path(bin_dir) / name)
    what = " ".join((program, *args))
    try:
        result = subprocess.run([program, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BridgeError(f"{what}: {getattr(e, 'strerror', None) or e}") from None
    if result.returncode != 0:
        raise BridgeError(f"{what} exited {result.returncode}: {_one_line(result.stderr or result.stdout)}")
    return result.stdout


def _one_line(message: str) -> str:
    """A finding is one line: of a command's errors, the fatal one (scontrol says why it gave
    up last, after its retries), else the first."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    line = next((line for line in reversed(lines) if "fatal" in line.lower()), lines[0] if lines else "no message")
    return line if len(line) <= 300 else line[:297] + "..."


def _seconds(value: str | None) -> int | None:
    match = re.match(r"(\d+)", value or "")
    return int(match.group(1)) if match else None


def _options(value: str | None) -> list[str]:
    return [] if value in (None, "(null)") else [part.strip() for part in value.split(",") if part.strip()]


def _version(settings: dict[str, str]) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", settings.get("SLURM_VERSION", ""))
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def slurm_user(settings: dict[str, str]) -> str:
    """``SlurmUser = slurm(64030)`` → ``slurm``."""
    return settings.get("SlurmUser", "root").split("(", 1)[0] or "root"


def controller_findings(settings: dict[str, str],
                        resolve: Callable[[str], list[str]] | None = None) -> list[Finding]:
    """SlurmctldHost must be an address the pods reach: a configless slurmd fetches the config
    from ``conf_server``, then registers with the SlurmctldHost written in that config."""
    resolve = resolve or _addresses
    value = settings.get("SlurmctldHost[0]") or settings.get("SlurmctldHost") or ""
    name, _, address = value.partition("(")
    host = address.rstrip(")") or name
    if not host:
        return [Finding("FAIL", "SlurmctldHost", "not set")]
    try:
        addresses = resolve(host)
    except OSError as e:
        return [Finding("FAIL", "SlurmctldHost", f"{host} does not resolve here ({e}); slurmd in the pods "
                                                 f"registers with it, so no node would come up")]
    if all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        return [Finding("WARN", "SlurmctldHost", f"{value} is a loopback address ({', '.join(addresses)}): only "
                                                 f"pods on this host can register; elsewhere write "
                                                 f"SlurmctldHost=<name>(<address the pods reach>)")]
    return [Finding("OK", "SlurmctldHost", f"{value} ({', '.join(addresses)})")]


def conf_server_findings(config: Any, resolve: Callable[[str], list[str]] | None = None) -> list[Finding]:
    """``slurm.conf_server`` is what every pod's slurmd fetches its config from."""
    resolve = resolve or _addresses
    host = config.slurm.conf_server.rsplit(":", 1)[0].strip("[]") if ":" in config.slurm.conf_server \
        else config.slurm.conf_server
    try:
        addresses = resolve(host)
    except OSError as e:
        return [Finding("FAIL", "slurm.conf_server", f"{host} does not resolve here ({e}); the pods fetch "
                                                     f"slurm.conf from it")]
    if all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        return [Finding("WARN", "slurm.conf_server", f"{config.slurm.conf_server} is a loopback address: only "
                                                     f"pods on this host can fetch the config")]
    return [Finding("OK", "slurm.conf_server", f"{config.slurm.conf_server} ({', '.join(addresses)})")]


def _addresses(host: str) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)})


def munge_findings(settings: dict[str, str]) -> list[Finding]:
    options = dict(part.partition("=")[::2] for part in _options(settings.get("AuthInfo")))
    path = options.get("socket")
    if path and path != MUNGE_SOCKET:
        return [Finding("FAIL", "AuthInfo", f"socket={path}: slurmd in the pods would look for munged there, but "
                                            f"the image's munged listens on {MUNGE_SOCKET} (the default, which a "
                                            f"configless slurmd also uses before it has a config); remove socket=")]
    return [Finding("OK", "AuthInfo", f"munge socket {MUNGE_SOCKET}")]


def cgroup_findings(settings: dict[str, str], config: Any) -> list[Finding]:
    """slurm.conf's cgroup plugins against the nodesets' ``cgroups``. A pod that cannot create
    cgroups still registers, then every job fails with "Plugin initialization failed" while
    Slurm shows it COMPLETED 0:0: a researcher would believe the job ran. A nodeset with
    ``cgroups`` but no plugin to use them runs privileged pods for nothing."""
    used = [f"ProctrackType={settings.get('ProctrackType')}"] if settings.get("ProctrackType") == "proctrack/cgroup" else []
    used += ["TaskPlugin=task/cgroup"] if "task/cgroup" in _options(settings.get("TaskPlugin")) else []
    nodesets = list(config.nodesets) if config is not None else []
    if not used:
        plain = f"ProctrackType={settings.get('ProctrackType')}, TaskPlugin={settings.get('TaskPlugin')}"
        privileged = [n.name for n in nodesets if n.cgroups]
        if privileged:
            return [Finding("WARN", "cgroups", f"{plain}: nodeset(s) {', '.join(privileged)} set cgroups: true, "
                                               f"which makes their pods privileged for cgroup plugins slurm.conf "
                                               f"does not use; remove it")]
        return [Finding("OK", "cgroups", plain)]
    unable = [n.name for n in nodesets if not n.cgroups]
    if config is not None and not unable:
        return [Finding("OK", "cgroups", f"{' and '.join(used)}: every nodeset sets cgroups: true (privileged pods)")]
    pods = f"the pods of nodeset(s) {', '.join(unable)}" if unable else "the pods"
    return [Finding("FAIL", "cgroups", f"{' and '.join(used)}: slurmd in {pods} "
                                       f"cannot use it; every job there would fail ('Plugin initialization failed') "
                                       f"while Slurm shows it COMPLETED 0:0. Set cgroups: true on the nodeset "
                                       f"(privileged pods, docs/hpc-nodes.md#cgroups), or use "
                                       f"ProctrackType=proctrack/linuxproc and TaskPlugin=task/affinity or task/none")]


LUA_PLUGINS = {"job_submit": ("JobSubmitPlugins", "sbatch, salloc and srun outside an allocation"),
               "cli_filter": ("CliFilterPlugins", "srun inside an allocation")}
"""The Lua script a slurm.conf key loads, and the commands it checks (bridge/slurmlua.py)."""


def lua_findings(settings: dict[str, str], config: Any) -> list[Finding]:
    """Where nodesets mount filesystems, the generated Lua plugins refuse a job whose files
    would otherwise land in the pod's private /tmp and vanish with it (slurmstepd's fallback):
    the plugin must be on in slurm.conf, and the script beside it the one the config gives."""
    if config is None or not any(nodeset.filesystems for nodeset in config.nodesets):
        return []
    from bridge import slurmlua

    conf_dir = Path(settings.get("SLURM_CONF") or "/etc/slurm/slurm.conf").parent
    found = []
    for kind, (key, commands) in LUA_PLUGINS.items():
        script = conf_dir / slurmlua.FILE_NAMES[kind]
        fix = f"slurm-k8s-bridge slurm-lua {kind} -o {script}"
        if not any(p.split("/")[-1] == "lua" for p in _options(settings.get(key))):
            found.append(Finding("WARN", key, f"lacks lua: {commands} from a directory the pods do not mount "
                                              f"run in the pod's /tmp and lose their output with the pod; "
                                              f"add lua, run '{fix}' and restart slurmctld"))
            continue
        try:
            current = script.read_text() == slurmlua.render(config, kind)
        except OSError as e:
            found.append(Finding("WARN", key, f"{script}: {e.strerror}; run '{fix}'"))
            continue
        found.append(Finding("OK", key, f"{script} matches the nodesets' filesystems") if current else
                     Finding("WARN", key, f"{script} is not what the nodesets' filesystems give (edited, or the "
                                          f"config changed since): run '{fix}'"))
    return found


def power_saving_findings(settings: dict[str, str], config: Any,
                          partitions: list[dict[str, str]] | None = None) -> list[Finding]:
    """The settings of slurm/slurm.conf.power-saving, against the bridge's own config."""
    found: list[Finding] = []
    params = [p.split("=", 1)[0] for p in _options(settings.get("SlurmctldParameters"))]
    wanted = {"enable_configless": ("FAIL", "pods fetch slurm.conf from slurmctld (slurmd --conf-server)"),
              "idle_on_node_suspend": ("WARN", "a node whose pod vanished stays DOWN instead of being resumable"),
              "power_save_interval": ("WARN", "the hooks are called every 10 s instead of every second")}
    version = SlurmVersion(*_version(settings))
    if version.supports("cloud_reg_addrs"):
        wanted["cloud_reg_addrs"] = ("FAIL", "a pod's address is known only when its slurmd registers")
    elif "cloud_reg_addrs" in params:
        found.append(Finding("WARN", "SlurmctldParameters", f"cloud_reg_addrs is gone from Slurm {version} (its "
                                                            f"behaviour is the default since 23.11): remove it"))
    for param, (status, why) in wanted.items():
        if param not in params:
            found.append(Finding(status, "SlurmctldParameters", f"lacks {param}: {why}"))
    scheduler = [p.split("=", 1)[0] for p in _options(settings.get("SchedulerParameters"))]
    if version.supports("requeue_on_resume_failure") and "requeue_on_resume_failure" not in scheduler:
        found.append(Finding("WARN", "SchedulerParameters", f"lacks requeue_on_resume_failure (Slurm {version} has "
                                                            f"it): a job whose nodes hit ResumeTimeout is failed, "
                                                            f"not requeued"))
    if "cloud" not in _options(settings.get("PrivateData")):
        found.append(Finding("WARN", "PrivateData", "lacks cloud: powered-down nodes are hidden from sinfo"))
    timeout = _seconds(settings.get("ResumeTimeout"))
    if config is not None and timeout is not None:
        if timeout <= config.resume.deadline:
            found.append(Finding("FAIL", "ResumeTimeout", f"{timeout} s is not above resume.deadline "
                                                          f"({config.resume.deadline:g} s): Slurm would fail a job "
                                                          f"before the bridge can say why"))
        grace = max((n.termination_grace_period for n in config.nodesets), default=0)
        suspend_timeout = _seconds(settings.get("SuspendTimeout"))
        if suspend_timeout is not None and suspend_timeout < grace:
            found.append(Finding("WARN", "SuspendTimeout", f"{suspend_timeout} s is shorter than a pod's "
                                                           f"termination grace period ({grace} s): a node resumed "
                                                           f"again may meet its old pod"))
    found += _warm_pool_findings(settings, config, partitions)
    if not found:
        found.append(Finding("OK", "power saving", f"ResumeTimeout {settings.get('ResumeTimeout')}, "
                                                   f"SlurmctldParameters {settings.get('SlurmctldParameters')}"))
    return found


def _warm_pool_findings(settings: dict[str, str], config: Any,
                        partitions: list[dict[str, str]] | None) -> list[Finding]:
    """Slurm powers down every node idle for SuspendTime, the nodes a warm pool holds included;
    the pool then powers them up again at its next look: a boot for nothing, and no warm node
    meanwhile. A node's SuspendTime is the highest its partitions set, else the global one."""
    from bridge.config import warm_pools

    if config is None:
        return []

    def seconds(value: str | None) -> float | None:  # None: not set here
        if value in (None, "", "GLOBAL", "(null)"):
            return None
        return math.inf if value in ("INFINITE", "NONE", "UNLIMITED", "-1") else _seconds(value)

    global_time = seconds(settings.get("SuspendTime"))
    global_time = math.inf if global_time is None else global_time  # NONE: power saving off
    excluded_parts = set(_options(settings.get("SuspendExcParts")))
    members = [(set(hostlist.expand(p["Nodes"])) if p.get("Nodes") not in (None, "", "(null)", "ALL") else
                (None if p.get("Nodes") == "ALL" else set()),
                math.inf if p.get("PartitionName") in excluded_parts else seconds(p.get("SuspendTime")))
               for p in partitions or ()]
    # SuspendExcNodes=<nodes> keeps those nodes up; <nodes>:N (24.05) only N of them, so the
    # others still go after SuspendTime.
    never: set[str] = set()
    if (excluded := settings.get("SuspendExcNodes")) not in (None, "", "(null)") and ":" not in excluded:
        with contextlib.suppress(BridgeError):
            never = set(hostlist.expand(excluded))
    found = []
    for name, nodesets in warm_pools(config.nodesets).items():
        times = set()
        for node in (n for ns in nodesets for n in hostlist.expand(ns.nodes)):
            own = [t for nodes, t in members if t is not None and (nodes is None or node in nodes)]
            times.add(math.inf if node in never else max(own) if own else global_time)
        if (shortest := min(times)) < math.inf:
            found.append(Finding("WARN", "SuspendTime", f"{shortest:g} s for warm pool {name}'s nodes: Slurm powers "
                                                        f"down the idle nodes the pool holds, and the pool powers them "
                                                        f"up again; set SuspendTime=INFINITE on their partition "
                                                        f"(README \"Warm pool\")"))
    return found


def mixed_pools(config: Any) -> dict[str, tuple[list[str], list[str]]]:
    """The warm pools that mix spot and other capacity: their spot nodes and the rest."""
    from bridge.config import price_rank, warm_pools

    mixed = {}
    for name, nodesets in warm_pools(config.nodesets).items():
        if len({price_rank(ns) for ns in nodesets}) > 1:
            mixed[name] = tuple([n for ns in nodesets if price_rank(ns) == rank for n in hostlist.expand(ns.nodes)]
                                for rank in (0, 1))
    return mixed


def parse_weights(text: str) -> dict[str, int]:
    """``sinfo --Node --format='%N %w'``: a node on each line (once per partition) and its Weight."""
    weights = {}
    for line in text.splitlines():
        node, _, weight = line.strip().partition(" ")
        if node and weight.strip().isdigit():
            weights[node] = int(weight)
    return weights


def read_weights(bin_dir: str, nodes: list[str], *, timeout: float = 10.0) -> dict[str, int]:
    """Raises BridgeError: slurmctld did not answer."""
    return parse_weights(_command(bin_dir, "sinfo", "--all", "--noheader", "--Node", f"--nodes={hostlist.fold(nodes)}",
                                  "--format=%N %w", timeout=timeout))


def weight_findings(pools: dict[str, tuple[list[str], list[str]]], weights: dict[str, int]) -> list[Finding]:
    """A shared warm pool keeps its idle nodes on spot first, but which idle node a job gets is
    Slurm's choice: the lowest Weight, then the order of slurm.conf. A spot node that weighs no
    less than an on-demand one of its pool leaves spot idle while jobs run on on-demand.
    ``pools``: :func:`mixed_pools`; nodes Slurm did not list (in no partition) are left out."""
    found = []
    for name, (spot, rest) in pools.items():
        spot_weights = [(weights[n], n) for n in spot if n in weights]
        rest_weights = [(weights[n], n) for n in rest if n in weights]
        if spot_weights and rest_weights and (heavy := max(spot_weights))[0] >= (light := min(rest_weights))[0]:
            found.append(Finding("WARN", "Weight", f"warm pool {name}: spot node {heavy[1]} has Weight={heavy[0]}, "
                                                   f"not below on-demand node {light[1]} (Weight={light[0]}): Slurm "
                                                   f"gives jobs idle on-demand nodes before the spot nodes the pool "
                                                   f"keeps warm; give the spot nodes the lower Weight (README "
                                                   f"\"Warm pool\")"))
    return found


def skew_findings(settings: dict[str, str], config: Any) -> list[Finding]:
    """slurmd in a nodeset's image must be no newer than slurmctld and at most two releases older;
    the image's tag says which Slurm it carries (``slurmd:24.11.5``)."""
    controller = settings.get("SLURM_VERSION", "")
    if config is None or not controller:
        return []
    found = [Finding("FAIL", f"nodeset {n.name}", problem) for n in config.nodesets
             if (problem := image_skew(controller, n.image))]
    return found or [Finding("OK", "Slurm versions", f"slurmctld {controller}; every nodeset image whose tag "
                                                     f"names a Slurm version can register with it")]


def hook_findings(settings: dict[str, str], who: Account) -> list[Finding]:
    found = []
    for key, severity in HOOK_KEYS.items():
        program = settings.get(key)
        if program in (None, "", "(null)"):
            found.append(Finding(severity, key, "not set (see slurm/slurm.conf.power-saving)"))
        else:
            found += program_findings(key, program, who)
    return found


# ---- the bridge's own files -----------------------------------------------------------------

def file_findings(config: Any, who: Account) -> list[Finding]:
    """What the hooks, running as ``who``, read and write (README, "Set it up", step 4)."""
    found = []

    def need(topic: str, path: str | None, want: int, why: str) -> None:
        if not path:
            return
        problem = access_problem(path, who, want)
        may = "write into" if want == WRITE | EXECUTE else _mode_words(want)
        found.append(Finding("FAIL", topic, f"{problem}: {why}") if problem else
                     Finding("OK", topic, f"{path}: {who.name} may {may}"))

    need("config file", config.path, READ, "every hook reads it")
    if config.kubernetes.kubeconfig:
        need("kubeconfig", config.kubernetes.kubeconfig, READ, "the hooks reach Kubernetes with it")
        for key, path in _kubeconfig_files(config.kubernetes.kubeconfig):
            need(f"kubeconfig {key}", path, READ, "the kubeconfig names it")
    if config.log.file:
        log = Path(config.log.file)
        if log.exists():
            need("log.file", str(log), WRITE, "the hooks log there (else only to slurmctld's discarded stderr)")
        else:
            need("log.file", str(log.parent), WRITE | EXECUTE, f"{log} does not exist and must be created")
    need("resume.state_dir", config.resume.state_dir, WRITE | EXECUTE,
         "the bridge keeps the reasons of DOWN nodes there")
    package = Path(__file__).resolve().parent
    need("package", str(package / "hooks.py"), READ, f"the hooks import the bridge from {package}")
    for template in dict.fromkeys(str(config.template_path(n)) for n in config.nodesets):
        need("templates", template, READ, "resume renders pods from it")
    return found


def _kubeconfig_files(path: str) -> Iterable[tuple[str, str]]:
    """Files a kubeconfig names (certificate-authority, client-certificate, client-key, tokenFile)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    base = Path(path).parent
    named = []
    for section, key in (("clusters", "cluster"), ("users", "user")):
        for entry in data.get(section) or []:
            for field in ("certificate-authority", "client-certificate", "client-key", "tokenFile"):
                value = (entry.get(key) or {}).get(field)
                if value:
                    named.append((field, str(base / value)))
    return named


# ---- what the bridge may do in Kubernetes --------------------------------------------------

POD_VERBS = (("", "pods", "create"), ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "delete"),
             ("", "pods/log", "get"), ("", "events", "create"))
"""(apiGroup, resource, verb) every site needs: what bridge/kube.py calls for pods and events
(rbac/role.yaml grants exactly these; tests/unit/test_rbac.py keeps it so)."""
POD_GROUP_VERBS = ("create", "get", "delete")
"""On the PodGroups of a nodeset with a Volcano or coscheduling gang."""
LEASE_VERB = ("coordination.k8s.io", "leases", "get")
"""With ``daemon.in_cluster``: the resume hook reads the daemon's Lease."""

Reviewer = Callable[[str, str, str, str], bool]
"""``(group, resource, verb, namespace) -> allowed``: a SelfSubjectAccessReview's answer."""


def needed_verbs(config: Any) -> list[tuple[str, str, str]]:
    from bridge.gang import POD_GROUP_KINDS

    needs = list(POD_VERBS)
    for nodeset in config.nodesets:
        if nodeset.gang is not None and nodeset.gang.kind in POD_GROUP_KINDS:
            api_version, _, plural = POD_GROUP_KINDS[nodeset.gang.kind]
            needs += [(api_version.split("/")[0], plural, verb) for verb in POD_GROUP_VERBS]
    if config.daemon.in_cluster:
        needs.append(LEASE_VERB)
    return list(dict.fromkeys(needs))


def access_findings(config: Any, allowed: Reviewer) -> list[Finding]:
    """The verbs the bridge's identity is actually granted, as the API server's authorizer
    answers: a missing one otherwise shows only as a 403 when a job needs its pods."""
    namespace = config.kubernetes.namespace
    try:
        missing = [(g, r, v) for g, r, v in needed_verbs(config) if not allowed(g, r, v, namespace)]
    except BridgeError as e:
        return [Finding("FAIL", "kubernetes", f"cannot ask what the bridge may do: {e}")]
    if not missing:
        return [Finding("OK", "kubernetes", f"the bridge's identity may do all {len(needed_verbs(config))} things "
                                            f"it does in namespace {namespace}")]
    return [Finding("FAIL", "kubernetes", f"the bridge's identity may not {verb} {resource}"
                                          f"{f'.{group}' if group else ''} in namespace {namespace}: the "
                                          f"API would refuse it (403) when a job needs it; apply rbac/")
            for group, resource, verb in missing]


def lightkube_reviewer(settings: Any) -> Reviewer:
    """Asks with the config's own kubeconfig (SelfSubjectAccessReview: every authenticated
    identity may, through Kubernetes' system:basic-user; no Role needs to grant it)."""
    import httpx2
    import lightkube
    from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
    from lightkube.resources.authorization_v1 import SelfSubjectAccessReview

    from bridge import kube

    config = kube._kubeconfig(settings)
    client = lightkube.Client(config=config, timeout=settings.timeout)

    def allowed(group: str, resource: str, verb: str, namespace: str) -> bool:
        resource, _, subresource = resource.partition("/")  # "pods/log": the review names them apart
        attributes = ResourceAttributes(group=group, resource=resource, subresource=subresource or None, verb=verb,
                                        namespace=namespace)
        try:
            answer = client.create(SelfSubjectAccessReview(spec=SelfSubjectAccessReviewSpec(resourceAttributes=attributes)))
        except (lightkube.ApiError, httpx2.TransportError, OSError) as e:
            raise kube.translate(e, config.cluster.server) from e
        return bool(answer.status and answer.status.allowed)

    return allowed


# ---- pods -----------------------------------------------------------------------------------

def nodeset_findings(config: Any, slurm: Any) -> list[Finding]:
    """For one node per nodeset: its pod renders (and validates, with the [check] extra), and
    its memory leaves slurmd and munged room beside a job that uses all of RealMemory."""
    from bridge import hostlist, validate
    from bridge.errors import NotInstalled

    try:
        validate.require_schemas()
        schemas = True
    except NotInstalled:
        schemas = False
    found = overlap_findings(config)
    for nodeset in config.nodesets:
        topic = f"nodeset {nodeset.name}"
        first = next(iter(hostlist.expand(nodeset.nodes)), None)
        facts = slurm.node_facts([first]).get(first) if first else None
        if facts is None:
            found.append(Finding("FAIL", topic, f"Slurm knows no node {first} of {nodeset.nodes}: add its "
                                                f"NodeName line (slurm/slurm.conf.cloud-nodes)"))
            continue
        found += _pod_findings(config, facts, topic, schemas)
        found += memory_findings(nodeset, facts, topic)
    return found


def overlap_findings(config: Any) -> list[Finding]:
    """A node two nodesets name gets the first one's pod: the second's settings never apply to it."""
    from bridge import hostlist
    from bridge.config import first_claims

    expanded = [hostlist.expand(nodeset.nodes) for nodeset in config.nodesets]
    owner = first_claims(expanded)
    found = []
    for j, nodeset in enumerate(config.nodesets):
        shared: dict[str, list[str]] = {}
        for node in expanded[j]:
            if owner[node] != j:
                shared.setdefault(config.nodesets[owner[node]].name, []).append(node)
        for first, nodes in shared.items():
            found.append(Finding("WARN", f"nodeset {nodeset.name}", f"{hostlist.fold(nodes)} also in nodeset {first}, "
                                                                    f"which comes first: those nodes get {first}'s pods"))
    return found


def _pod_findings(config: Any, facts: Any, topic: str, schemas: bool) -> list[Finding]:
    from bridge import validate
    from bridge.render import render_pod

    try:
        if schemas:
            problems = validate.check_pod(config, facts)
            if problems:
                return [Finding("FAIL", topic, problem) for problem in problems]
        pod = render_pod(config, facts).manifest
    except BridgeError as e:
        return [Finding("FAIL", topic, f"{e.kind}: {e}")]
    if not schemas:
        return [Finding("WARN", topic, f"pod for {facts.name} renders; not checked against Kubernetes' schema: "
                                       f"pip install 'slurm-k8s-bridge[check]'"), *entrypoint_findings(pod, topic)]
    return [Finding("OK", topic, f"pod for {facts.name} valid for Kubernetes {', '.join(validate.SUPPORTED)} "
                                 f"(QoS {validate.qos_class(pod)})"), *entrypoint_findings(pod, topic)]


def entrypoint_findings(pod: dict, topic: str) -> list[Finding]:
    """A template whose slurmd container sets ``command`` replaces the image's entrypoint, tini
    included: slurmd becomes PID 1, which ignores SIGTERM until slurmd has its config, so a pod
    deleted while it starts would hold its node's resources for its whole grace period."""
    containers = pod.get("spec", {}).get("containers", [])
    slurmd = next((c for c in containers if c.get("name") == "slurmd"), containers[0] if containers else {})
    if "command" not in slurmd:
        return []
    return [Finding("WARN", topic, f"container {slurmd.get('name')} sets command {slurmd['command']}: it replaces "
                                   f"the image's entrypoint (tini, then slurmd-entrypoint), and a pod deleted while "
                                   f"its slurmd starts then waits out terminationGracePeriodSeconds; give slurmd's "
                                   f"arguments in args")]


def memory_findings(nodeset: Any, facts: Any, topic: str) -> list[Finding]:
    from bridge.config import SLURMD_MEMORY_MB

    if facts.real_memory_mb <= 1:
        return [Finding("WARN", topic, f"node {facts.name} has no RealMemory in Slurm: its pod gets no memory "
                                       f"limit and Slurm does not bound jobs' memory")]
    limit = facts.real_memory_mb + nodeset.memory_overhead_mb
    if nodeset.memory_overhead_mb < SLURMD_MEMORY_MB:
        return [Finding("WARN", topic, f"pod memory {limit} MiB = RealMemory {facts.real_memory_mb} + "
                                       f"memory_overhead_mb {nodeset.memory_overhead_mb}: slurmd and munged need "
                                       f"about {SLURMD_MEMORY_MB} MiB beside a job using all of RealMemory, or the "
                                       f"kubelet OOM-kills the pod")]
    return [Finding("OK", topic, f"pod memory {limit} MiB = RealMemory {facts.real_memory_mb} + "
                                 f"memory_overhead_mb {nodeset.memory_overhead_mb}")]


# ---- all of it ------------------------------------------------------------------------------

def run(config_path: str | None) -> list[Finding]:
    """Every finding, in the order an admin fixes them."""
    from bridge.slurm import CommandSlurm

    config, problem = _load(config_path)
    bin_dir = config.slurm.bin_dir if config is not None else "/usr/bin"
    try:
        settings = read_slurm_config(bin_dir)
    except BridgeError as e:
        return [_config_finding(config, problem), Finding("FAIL", "slurm.conf", f"cannot ask slurmctld: {e}")]
    hooks_read = hooks_config_path(settings)
    if config_path is None and not os.environ.get(config_env()) and (config is None or config.path != hooks_read):
        config, problem = _load(hooks_read)  # the admin's shell may lack the SLURM_CONF slurmctld has
    found = [_config_finding(config, problem)]
    if config is not None and os.path.abspath(config.path) != os.path.abspath(hooks_read):
        found.append(Finding("WARN", "config", f"the hooks read {hooks_read} (they get only SLURM_CONF), "
                                               f"not {config.path}"))
    try:
        who = Account.of(slurm_user(settings))
    except KeyError:
        return found + [Finding("FAIL", "SlurmUser", f"{slurm_user(settings)} is not a user on this host")]
    found.append(Finding("OK", "SlurmUser", f"{who.name} (uid {who.uid}) runs the hooks"))
    found += hook_findings(settings, who)
    found += controller_findings(settings) + munge_findings(settings) + cgroup_findings(settings, config)
    try:
        partitions = read_partitions(bin_dir)
    except BridgeError:
        partitions = None  # slurmctld answered show config a moment ago: the global settings only
    found += power_saving_findings(settings, config, partitions) + skew_findings(settings, config)
    if config is not None and (mixed := mixed_pools(config)):
        try:
            weights = read_weights(bin_dir, [n for nodes in mixed.values() for part in nodes for n in part])
            found += weight_findings(mixed, weights)
        except BridgeError as e:
            found.append(Finding("WARN", "Weight", f"cannot read the warm pools' node weights: {e}"))
    found += lua_findings(settings, config)
    if config is not None:
        found += conf_server_findings(config)
        found += file_findings(config, who)
        found += _access(config)
        found += nodeset_findings(config, CommandSlurm(bin_dir))
    return found


def _access(config: Any) -> list[Finding]:
    try:
        reviewer = lightkube_reviewer(config.kubernetes)
    except BridgeError as e:
        return [Finding("FAIL", "kubernetes", str(e))]
    return access_findings(config, reviewer)


def hooks_config_path(settings: dict[str, str]) -> str:
    """The config file the hooks read: they get only SLURM_CONF from slurmctld."""
    from bridge import config as config_module

    return config_module.resolve_path(None, {"SLURM_CONF": settings.get("SLURM_CONF") or config_module.DEFAULT_PATH})


def config_env() -> str:
    from bridge import config as config_module

    return config_module.ENV_VAR


def _load(path: str | None) -> tuple[Any, str]:
    from bridge import config as config_module

    try:
        return config_module.load(path), ""
    except BridgeError as e:
        return None, str(e)


def _config_finding(config: Any, problem: str) -> Finding:
    if config is None:
        return Finding("FAIL", "config", problem)
    return Finding("OK", "config", f"{config.path} loads ({len(config.nodesets)} nodeset(s))")


def main(config_path: str | None, echo: Callable[[str], None] = print) -> int:
    """Print the findings; the exit code is EXIT_FAILED when any is FAIL."""
    findings = run(config_path)
    for finding in findings:
        echo(finding.line())
    failed = sum(f.status == "FAIL" for f in findings)
    echo(f"{failed} problem(s) found" if failed else "no problem found")
    return EXIT_FAILED if failed else 0
