"""The whole one-machine environment: real Slurm, a Kubernetes API, a scheduler, a pod runner,
and the bridge's hooks wired into slurm.conf — started together, stopped together.

    with Environment() as env:
        env.slurm.run("sbatch", "-N2", "--wrap", "hostname")

Every component is a process of its own, talking to the others only the way it would in
production: slurmctld runs the bridge's console scripts as its hooks; the bridge, the scheduler
and the runner reach Kubernetes through a kubeconfig. With ``KUBECONFIG`` set (or
``kubeconfig=`` given), no API stand-in and no scheduler are started: the runner registers its
virtual nodes with that API server instead. ``stop()`` leaves no process and no directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testenv import install, site
from testenv.slurm import processes
from testenv.slurm.cluster import SlurmCluster
from testenv.slurm.config import POD_GPU_FILES, Hooks, NodeGroup, Timeouts

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "testenv" / "crds"
BIN = install.bin_dir()
"""The bridge's console scripts as a site has them: a non-editable install in a venv of the
system's Python (testenv/install.py; Environment.start() refreshes it)."""
SLURM_USER = "slurm"
"""slurmctld's SlurmUser, whom it runs the hooks as: Debian's slurmctld package creates it."""
NAMESPACE = "slurm"
IMAGE = "slurm-k8s-bridge/slurmd:22.05.8"
BRIDGE_USER = f"system:serviceaccount:{NAMESPACE}:slurm-k8s-bridge"
FOLLOW_MODES = ("hooks", "daemon")
FOLLOW_MODE_ENV = "SLURM_K8S_BRIDGE_FOLLOW_MODE"
"""Who follows resumed jobs: "hooks" (each resume hook starts its own follower process) or
"daemon" (``slurm-k8s-bridge daemon`` runs beside slurmctld and the hooks hand over to it)."""
DAEMON_SETTINGS = {"follow": True, "metrics_address": ""}
"""The environment's daemon: follows jobs; no metrics port (two environments may run at once)."""


@dataclass(frozen=True)
class KubeNode:
    """A virtual Kubernetes node the pod runner registers and runs pods on."""

    name: str
    capacity: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()


DEFAULT_KUBE_NODES = (
    KubeNode("worker-1", {"cpu": "8", "memory": "16Gi", "pods": "110"}),
    KubeNode("worker-2", {"cpu": "8", "memory": "16Gi", "pods": "110"}),
)


class EnvironmentError_(RuntimeError):
    """A component did not start."""


class Environment:
    """Slurm + Kubernetes (stand-in or real) + pod runner + the bridge, on this machine."""

    def __init__(
        self,
        *,
        node_groups: Sequence[NodeGroup] = (NodeGroup(prefix="elastic", count=4, cpus=1, real_memory=500),),
        kube_nodes: Sequence[KubeNode] = DEFAULT_KUBE_NODES,
        timeouts: Timeouts = Timeouts(suspend_time=5, resume_timeout=120, suspend_timeout=2),
        bridge: dict[str, Any] | None = None,
        nodesets: list[dict[str, Any]] | None = None,
        images: dict[str, dict[str, Any]] | None = None,
        kubeconfig: str | None = None,
        backoff: float = 1.0,
        scheduler: bool = True,
        gres_conf: str | None = None,
        runtime: str = "process",
        node_scripts: Path | None = None,
        slurm_user: str = SLURM_USER,
        rbac: Path = REPO / "rbac",
        slurm_version: str | None = None,
        kubeapi_args: Sequence[str] = (),
        cgroups: bool = False,
        follow_mode: str | None = None,
        before_suspend: str | None = None,
        before_resume: str | None = None,
    ) -> None:
        """bridge: settings merged into the bridge config (e.g. ``{"resume": {"deadline": 20}}``);
        nodesets: the bridge's nodesets (default: one per node group, the slurmd image);
        images: extra process-runtime images (reference → entrypoint/cmd);
        scheduler: False leaves pods unbound (benchmarks of the API path alone);
        gres_conf: slurmctld's gres.conf (default: File=/dev/slurm-gpuN lines, the links the slurmd
        entrypoint makes for the GPUs the runner's device plugin grants a pod);
        runtime: "process" runs pod containers as host processes, "docker" runs them from their
        images in the project's Docker engine (testenv/docker.py; the slurmd image is the one
        testenv/docker-setup.sh built for this host's Slurm version);
        node_scripts: slurmd's Prolog and Epilog (one program for both, as the image's job map);
        slurm_user: SlurmUser; the bridge's config, kubeconfig, log file and state dir are set up
        for it exactly as the README tells an admin;
        rbac: the directory of Roles the API stand-in enforces on the bridge (default: rbac/);
        slurm_version: a Slurm release (e.g. "24.11") whose slurmctld runs in a container with the
        bridge installed in its image, and whose slurmd the pods run (testenv/ctld_container.py;
        needs runtime="docker"); None: the host's slurmctld and the bridge of this checkout;
        kubeapi_args: extra options of the API stand-in, e.g. ``("--seats", "10")`` for API
        Priority and Fairness (``python -m testenv.kubeapi --help``);
        cgroups: slurm.conf with Slurm's defaults ProctrackType=proctrack/cgroup and
        TaskPlugin=task/cgroup,task/affinity plus a cgroup.conf (served configless), and every
        nodeset with ``cgroups: true`` unless it says otherwise (needs runtime="docker": the
        process runtime shares this machine's cgroupfs, which no pod has);
        follow_mode: "hooks" or "daemon" (default: $SLURM_K8S_BRIDGE_FOLLOW_MODE, else "hooks"):
        with "daemon", ``slurm-k8s-bridge daemon`` runs as SlurmUser from the hooks' install, as a
        site's systemd unit runs it, and start() returns once its heartbeat says it follows jobs
        (the host's slurmctld only);
        before_suspend: shell commands SuspendProgram runs before the bridge's suspend (a slow
        suspend, held back by the test; the host's slurmctld only);
        before_resume: the same for ResumeProgram (e.g. a hook still starting when slurmctld
        dies)."""
        if runtime not in ("process", "docker"):
            raise ValueError(f"runtime must be 'process' or 'docker', got {runtime!r}")
        if slurm_version and runtime != "docker":
            raise ValueError("slurm_version needs runtime='docker': its slurmd exists only as an image")
        if cgroups and (runtime != "docker" or slurm_version):
            raise ValueError("cgroups needs runtime='docker' and the host's slurmctld: only the Docker runtime "
                             "models what a privileged pod may do with cgroups")
        follow_mode = follow_mode or os.environ.get(FOLLOW_MODE_ENV) or "hooks"
        if follow_mode not in FOLLOW_MODES:
            raise ValueError(f"follow_mode must be one of {FOLLOW_MODES}, got {follow_mode!r}")
        # A containerised slurmctld's hooks are the image's install: no daemon beside it here.
        self.follow_mode = "hooks" if slurm_version else follow_mode
        self._node_groups = tuple(node_groups)
        self._kube_nodes = tuple(kube_nodes)
        self._timeouts = timeouts
        self._bridge_overrides = bridge or {}
        self._nodesets = nodesets
        self._images = images or {}
        self._external = kubeconfig or os.environ.get("KUBECONFIG")
        self._backoff = backoff
        self._scheduler = scheduler
        self._gres_conf = gres_conf
        self._node_scripts = node_scripts
        self.runtime = runtime
        self.slurm_user = slurm_user
        self._rbac = rbac
        self.slurm_version = slurm_version
        self._kubeapi_args = tuple(kubeapi_args)
        self.cgroups = cgroups
        self._before_suspend = before_suspend
        self._before_resume = before_resume
        self.image = IMAGE
        self._docker_env: dict[str, str] | None = None
        self.dir: Path | None = None
        self.slurm: Any = None
        """SlurmCluster, or ContainerCluster for another Slurm release: the same calls."""
        self._procs: dict[str, Any] = {}
        self.admin_kubeconfig: Path | None = None
        self.bridge_kubeconfig: Path | None = None
        self.api_url = ""
        self.admin_token = ""

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> Environment:
        self.dir = Path(tempfile.mkdtemp(prefix="k8s-bridge-env-", dir="/tmp"))
        self.dir.chmod(0o755)
        try:
            install.ensure()
            site.ensure()
            self._start_docker()
            self._start_kubernetes()
            self._start_slurm()
            self._write_bridge_config()
            self._apply_cluster_objects()
            self._start_runner()
            self._wait_nodes_ready()
            self._start_daemon()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Slurm first (no new hooks), then the runner (it kills its pods), the scheduler
        and the API; then remove every directory. Also kills followers the hooks started. The
        daemon goes first: it must not release nodes of a Slurm that is stopping."""
        daemon = self._procs.pop("daemon", None)
        if daemon is not None:
            processes.stop_child(daemon, grace=30)
        if self.slurm is not None:
            self.slurm.stop()
            self.slurm = None
        for name in ("runner", "scheduler", "kubeapi"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                processes.stop_child(proc, grace=30 if name == "runner" else 10)
        if self.dir is not None:
            strays = processes.processes_using(self.dir)
            if strays:
                processes.terminate(strays, grace=2)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self._docker_env is not None:
            from testenv import docker

            docker.release()
            self._docker_env = None

    def __enter__(self) -> Environment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what tests use --------------------------------------------------------------------

    @property
    def bridge_config_path(self) -> Path:
        assert self.slurm is not None
        return self.slurm.state_dir / "k8s-bridge.yaml"

    @property
    def bridge_log(self) -> Path:
        assert self.dir is not None
        return self.dir / "bridge.log"

    def bridge_log_records(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(line) for line in self.bridge_log.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def kube(self) -> Any:
        """A lightkube client with the admin's kubeconfig (for tests to look and to meddle)."""
        import lightkube

        return lightkube.Client(lightkube.KubeConfig.from_file(str(self.admin_kubeconfig)), namespace=NAMESPACE)

    def daemon_running(self) -> bool:
        """Whether the environment's own daemon (follow_mode "daemon") is still running."""
        proc = self._procs.get("daemon")
        return proc is not None and proc.poll() is None

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        """Make the API stand-in refuse calls (see testenv/kubeapi/faults.py for the fields)."""
        return self._testenv_api("POST", "/_testenv/faults", rule)

    def clear_faults(self) -> None:
        self._testenv_api("DELETE", "/_testenv/faults", None)

    def audit(self, user: str | None = None) -> list[dict[str, Any]]:
        path = "/_testenv/audit" + (f"?user={urllib.request.quote(user)}" if user else "")
        answer = self._testenv_api("GET", path, None)
        return answer.get("items", answer) if isinstance(answer, dict) else answer

    def diagnostics(self, lines: int = 40) -> str:
        """What a person needs to see when a test on this environment fails: the Slurm nodes that
        are not powered down, the bridge's pods, the bridge's warnings and errors, and the tails
        of slurmctld's, the runner's and each container's logs. Never raises."""
        if self.dir is None:
            return "environment stopped"
        parts: list[str] = []

        def section(title: str, produce: Any) -> None:
            try:
                text = produce()
            except Exception as e:  # noqa: BLE001 - a report must come out whatever is broken
                text = f"(cannot tell: {e})"
            parts.append(f"--- {title}\n{text}")

        def tail(path: Path, skip: str = "\0") -> str:
            kept = [line for line in path.read_text(errors="replace").splitlines() if skip not in line]
            return "\n".join(kept[-lines:])

        def nodes() -> str:
            assert self.slurm is not None
            out = self.slurm.run("scontrol", "-o", "show", "node", check=False).stdout.splitlines()
            return "\n".join(line for line in out if "POWERED_DOWN" not in line.split(" State=")[-1].split()[0])

        def pods() -> str:
            from lightkube.resources.core_v1 import Pod

            return "\n".join(json.dumps({"name": p.metadata.name, "node": p.spec.nodeName,
                                          "status": p.status.to_dict() if p.status else None})
                             for p in self.kube().list(Pod, namespace=NAMESPACE))

        def bridge() -> str:
            return "\n".join(json.dumps(r) for r in self.bridge_log_records()
                             if r.get("level") in ("warning", "error", "critical")
                             or r.get("event") in ("hook finished", "job followed", "job released", "reconcile"))

        def containers() -> str:
            assert self.dir is not None
            logs = sorted((self.dir / "runner").glob("**/*.log"), key=lambda f: f.stat().st_mtime)[-6:]
            return "\n".join(f"{f.relative_to(self.dir)}:\n{tail(f)}" for f in logs)

        if self.slurm is not None:
            section("Slurm nodes not powered down", nodes)
        section("pods", pods)
        section("bridge log (warnings, errors, outcomes)", bridge)
        if self.slurm is not None:
            section("slurmctld log", lambda: tail(self.slurm.slurmctld_log))
        section("runner log (no HTTP lines)", lambda: tail(self.dir / "runner.log", skip=" httpx"))
        section("container logs (newest)", containers)
        return "\n".join(parts)

    # ---- start-up steps --------------------------------------------------------------------

    def _start_docker(self) -> None:
        if self.runtime != "docker":
            return
        from testenv import docker

        self._docker_env = docker.acquire()  # raises DockerUnavailable, saying why
        self.image = docker.slurmd_image(self.slurm_version)

    def _start_kubernetes(self) -> None:
        assert self.dir is not None
        kube_dir = self.dir / "kube"
        kube_dir.mkdir()
        if self._external:
            self.admin_kubeconfig = Path(self._external)
            # The hooks' own copy, which SlurmUser may read (the caller's may sit in a private
            # directory); it must be self-contained, as docs/hpc-nodes.md's --embed-certs makes it.
            self.bridge_kubeconfig = kube_dir / "kubeconfig-bridge.yaml"
            shutil.copyfile(self._external, self.bridge_kubeconfig)
            return
        self.admin_token = os.urandom(12).hex()
        bridge_token = os.urandom(12).hex()
        auth = {"users": [{"name": "testenv-admin", "token": self.admin_token, "admin": True},
                          {"name": BRIDGE_USER, "token": bridge_token}],
                # the daemon runs as the same account, with rbac/daemon/'s additions
                "rbac": [str(self._rbac)] + ([str(self._rbac / "daemon")] if (self._rbac / "daemon").is_dir() else [])}
        (kube_dir / "auth.yaml").write_text(yaml.safe_dump(auth))
        self._spawn("kubeapi", [sys.executable, "-m", "testenv.kubeapi", "--host", "127.0.0.1", "--port", "0",
                                "--state-dir", str(kube_dir), "--auth-file", str(kube_dir / "auth.yaml"),
                                "--admin-token", self.admin_token, "--tls", *self._kubeapi_args])
        self.admin_kubeconfig = kube_dir / "kubeconfig-admin.yaml"
        self._wait_file(self.admin_kubeconfig, "kubeapi")
        self._wait_file(kube_dir / "url", "kubeapi")
        self.api_url = (kube_dir / "url").read_text().strip()
        self.bridge_kubeconfig = kube_dir / "kubeconfig-bridge.yaml"
        config = yaml.safe_load(self.admin_kubeconfig.read_text())
        for user in config["users"]:
            user["user"] = {"token": bridge_token}
        self.bridge_kubeconfig.write_text(yaml.safe_dump(config))
        self.bridge_kubeconfig.chmod(0o600)
        if self._scheduler:
            # It also stands in for Volcano and scheduler-plugins, whose names gang nodesets use.
            self._spawn("scheduler", [sys.executable, "-m", "testenv.scheduler",
                                      "--kubeconfig", str(self.admin_kubeconfig),
                                      "--gang", "volcano", "--gang", "coscheduling"])

    def _start_slurm(self) -> None:
        if self.slurm_version:
            from testenv.ctld_container import ContainerCluster

            assert self.dir is not None and self._docker_env is not None
            self.slurm = ContainerCluster(self.slurm_version, share=self.dir, node_groups=self._node_groups,
                                          timeouts=self._timeouts, docker_env=self._docker_env,
                                          site_dirs=[site.ROOT], users=site.users_data()).start()
            return
        hooks = Hooks(resume=self._hook_program("slurm-k8s-resume", self._before_resume),
                      suspend=self._hook_program("slurm-k8s-suspend", self._before_suspend),
                      resume_fail=BIN / "slurm-k8s-resume-fail", prolog_slurmctld=BIN / "slurm-k8s-prolog",
                      prolog=_in_image(self._node_scripts), epilog=_in_image(self._node_scripts))
        self.slurm = SlurmCluster(node_groups=self._node_groups, hooks=hooks, timeouts=self._timeouts,
                                  gpu_files=POD_GPU_FILES, gres_conf=self._gres_conf,
                                  slurm_user=self.slurm_user, prolog_wrapper=False, cgroups=self.cgroups,
                                  lua_plugins=True).start()

    def _hook_program(self, name: str, before: str | None) -> Path:
        """The hook slurm.conf names: the bridge's own, or a wrapper that runs ``before`` first."""
        if before is None:
            return BIN / name
        assert self.dir is not None
        wrapper = self.dir / f"{name}-wrapper"
        wrapper.write_text(f"#!/bin/sh\n{before}\nexec {BIN / name} \"$@\"\n")
        wrapper.chmod(0o755)
        return wrapper

    def _write_bridge_config(self) -> None:
        assert self.slurm is not None and self.dir is not None
        nodesets = self._nodesets or [
            {"name": group.prefix.lower().replace("_", "-"), "nodes": group.hostlist, "image": self.image}
            for group in self._node_groups]
        nodesets = [self._as_site_nodeset(nodeset) for nodeset in nodesets]
        daemon = DAEMON_SETTINGS if self.follow_mode == "daemon" else {}
        config = {
            "daemon": dict(daemon),
            "slurm": {"conf_server": self.slurm.slurmctld_address, "cluster_name": "testenv"},
            "kubernetes": {"kubeconfig": str(self.bridge_kubeconfig), "namespace": NAMESPACE,
                           "retry_seconds": 3, "timeout": 5},
            "log": {"file": str(self.bridge_log), "level": "debug"},
            "resume": {"state_dir": str(self.dir / "bridge-state"), "deadline": 100, "cooldown": 5, "poll": 0.25},
            "nodesets": nodesets,
        }
        _merge(config, self._bridge_overrides)
        self.bridge_config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._give_to_slurm_user(config)
        self._install_lua()

    def _install_lua(self) -> None:
        """The site's job_submit.lua and cli_filter.lua from the nodesets just written (README:
        ``slurm-k8s-bridge slurm-lua``): a job whose files no pod mounts is refused at submit.
        The containerised slurmctlds of other releases run without them."""
        if self.slurm_version:
            return
        from bridge import config as config_module, slurmlua

        config = config_module.load(str(self.bridge_config_path))
        self.slurm.install_lua({kind: slurmlua.render(config, kind) for kind in slurmlua.KINDS})

    def _give_to_slurm_user(self, config: dict[str, Any]) -> None:
        """What README step 4 tells an admin: the hooks run as SlurmUser, who reads the config
        and the kubeconfig (its token: 0600) and writes the log file and the state dir."""
        user = self.slurm_user
        _install(self.bridge_config_path, group=user, mode=0o640)
        _install(Path(config["kubernetes"]["kubeconfig"]), owner=user, group=user, mode=0o600)
        if config["log"].get("file"):
            log = Path(config["log"]["file"])
            log.touch()
            _install(log, owner=user, group=user, mode=0o640)
        state = Path(config["resume"]["state_dir"])
        state.mkdir(exist_ok=True)
        _install(state, owner=user, group=user, mode=0o750)

    def _as_site_nodeset(self, nodeset: dict[str, Any]) -> dict[str, Any]:
        """What the site's nodesets declare unless a test says otherwise: the site's homes and
        the directory the environment's own jobs run from (both at the submit host's paths), the
        users' ConfigMap; and where munged and slurmd find the paths this slurm.conf names
        (AuthInfo's socket, SlurmdSpoolDir, SlurmdLogFile), which a real image would have at its
        defaults."""
        assert self.slurm is not None
        filesystems = [{"name": "home", "path": str(site.HOME), "host_path": str(site.HOME)}]
        env: dict[str, str] = {}
        if not self.slurm_version:  # a containerised slurmctld's slurm.conf keeps Slurm's defaults
            layout = self.slurm.layout
            filesystems.append({"name": "jobs", "path": str(layout.job_dir), "host_path": str(layout.job_dir)})
            env = {"MUNGE_SOCKET": str(layout.munge_socket), "SLURMD_SPOOL_DIR": str(layout.slurmd_spool_dir("%n")),
                   "SLURMD_LOG_FILE": str(layout.slurmd_log("%n"))}
        cgroups = {"cgroups": True} if self.cgroups else {}
        return {"filesystems": filesystems, "users": {"config_map": site.USERS_CONFIG_MAP}, **cgroups,
                **nodeset, "env": {**env, **nodeset.get("env", {})}}

    def _apply_cluster_objects(self) -> None:
        """What a site applies once: namespace, RBAC, the munge key Secret; on the API stand-in
        also the PodGroup CRDs of Volcano and scheduler-plugins (testenv/crds/), which a real
        cluster has from installing those schedulers."""
        import base64

        from lightkube import codecs

        assert self.slurm is not None
        client = self.kube()
        if not self._external:
            for path in sorted(CRDS.glob("*.yaml")):
                for crd in codecs.load_all_yaml(path.read_text()):
                    _create(client, crd)
        for path in sorted(self._rbac.glob("*.yaml")):
            if path.name in ("kustomization.yaml", "munge-key-secret.example.yaml"):
                continue
            for obj in codecs.load_all_yaml(path.read_text()):
                # The stand-in takes Roles and RoleBindings from its auth file (the same rbac/),
                # and serves no RBAC API: an external stand-in says 404, a real cluster creates them.
                rbac = obj.kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
                if self._external or not rbac:
                    _create(client, obj, missing_ok=rbac)
        key = base64.b64encode(self.slurm.munge_key_path.read_bytes()).decode()
        _create(client, codecs.from_dict({"apiVersion": "v1", "kind": "Secret",
                                          "metadata": {"name": "munge-key", "namespace": NAMESPACE},
                                          "data": {"munge.key": key}}))
        _create(client, codecs.from_dict({"apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": {"name": site.USERS_CONFIG_MAP, "namespace": NAMESPACE},
                                          "data": site.users_data()}))

    def _start_runner(self) -> None:
        assert self.dir is not None
        runner_dir = self.dir / "runner"
        runner_dir.mkdir()
        nodes = {"nodes": [{"name": n.name, "capacity": n.capacity, "labels": n.labels, "taints": list(n.taints)}
                           for n in self._kube_nodes]}
        (self.dir / "nodes.yaml").write_text(yaml.safe_dump(nodes))
        images = {IMAGE: {"entrypoint": IMAGE_ENTRYPOINT, "cmd": []}, **self._images}
        images = {ref: {**image, "entrypoint": [str(_in_image(Path(word))) for word in image.get("entrypoint", [])]}
                  for ref, image in images.items()}
        (self.dir / "images.yaml").write_text(yaml.safe_dump({"images": images}))
        assert self.slurm is not None
        # A node has none of this host's test state nor the site's "NFS" unless a pod declares
        # it, and its image knows none of the site's users: the process runtime hides them.
        image_files = site.write_image_files(runner_dir)
        runtime = ["--runtime", self.runtime, "--images", str(self.dir / "images.yaml"),
                   *[f"--mask={path}" for path in (self.dir, self.slurm.state_dir, site.ROOT)],
                   *[f"--image-file={target}={source}" for target, source in image_files.items()]]
        if self.runtime == "docker":
            runtime = ["--runtime", "docker"]
        self._spawn("runner", [sys.executable, "-m", "testenv.runner", "--kubeconfig", str(self.admin_kubeconfig),
                               "--nodes", str(self.dir / "nodes.yaml"), *runtime,
                               "--state-dir", str(runner_dir),
                               "--backoff", str(self._backoff), "--max-backoff", str(self._backoff * 4),
                               "--on-stop", "delete"], extra_env=self._docker_env)

    def _start_daemon(self, timeout: float = 30.0) -> None:
        """What a site's systemd unit does (slurm/slurm-k8s-bridge-daemon.service): the daemon as
        SlurmUser from the hooks' install, with SLURM_CONF alone; ready once its heartbeat says it
        follows jobs, i.e. once the resume hook hands over to it."""
        if self.follow_mode != "daemon":
            return
        from bridge import heartbeat

        assert self.dir is not None and self.slurm is not None
        state_dir = yaml.safe_load(self.bridge_config_path.read_text())["resume"]["state_dir"]
        self._procs["daemon"] = processes.spawn(
            [str(BIN / "slurm-k8s-bridge"), "--config", str(self.bridge_config_path), "daemon"],
            log=self.dir / "daemon.log", env={"SLURM_CONF": str(self.slurm.conf_path), "PATH": "/usr/bin:/bin"},
            cwd=self.slurm.log_dir, user=self.slurm_user)
        deadline = time.monotonic() + timeout
        while not heartbeat.hand_over(state_dir, 30.0):
            self._check_alive()
            if time.monotonic() > deadline:
                raise EnvironmentError_(f"the daemon's heartbeat not fresh after {timeout} s; see {self.dir}/daemon.log")
            time.sleep(0.1)

    def _wait_nodes_ready(self, timeout: float = 30.0) -> None:
        from lightkube.resources.core_v1 import Node

        client = self.kube()
        wanted = {n.name for n in self._kube_nodes}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = {n.metadata.name for n in client.list(Node)
                     if n.status and any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))}
            if wanted <= ready:
                return
            self._check_alive()
            time.sleep(0.1)
        raise EnvironmentError_(f"virtual nodes not Ready after {timeout} s; see {self.dir}/runner.log")

    # ---- plumbing ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        assert self.dir is not None
        env = {**os.environ, "PYTHONPATH": str(REPO), **(extra_env or {})}
        self._procs[name] = processes.spawn(argv, log=self.dir / f"{name}.log", env=env, cwd=REPO)

    def _check_alive(self) -> None:
        assert self.dir is not None
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                tail = (self.dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise EnvironmentError_(f"{name} exited with {proc.returncode}:\n{tail}")

    def _wait_file(self, path: Path, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise EnvironmentError_(f"{name} did not start in {timeout} s")
            time.sleep(0.05)

    def _testenv_api(self, method: str, path: str, body: Any) -> Any:
        if not self.api_url:
            raise EnvironmentError_("fault injection and audit need the API stand-in (no KUBECONFIG)")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"})
        import ssl

        assert self.dir is not None
        context = ssl.create_default_context(cafile=str(self.dir / "kube" / "ca.crt"))
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:  # loopback only
            text = answer.read()
        return json.loads(text) if text else None


def _create(client: Any, obj: Any, *, missing_ok: bool = False) -> None:
    """Create, accepting "already exists" (and "no such API" when ``missing_ok``: a group the
    server does not serve is a plain-text 404, which lightkube leaves as httpx's error)."""
    import httpx2
    from lightkube import ApiError

    try:
        client.create(obj)
    except ApiError as e:
        if e.status.code != 409 and not (missing_ok and e.status.code == 404):
            raise
    except httpx2.HTTPStatusError as e:
        if not (missing_ok and e.response.status_code == 404):
            raise


IMAGE_SOURCES = REPO / "docker" / "slurmd"
#: The slurmd image's ENTRYPOINT (docker/slurmd/Dockerfile) for the process runtime: the host's
#: tini (testenv/setup.sh installs Debian's) as the container's PID 1, then the entrypoint script.
IMAGE_ENTRYPOINT = ["/usr/bin/tini", "--", str(IMAGE_SOURCES / "entrypoint.sh")]


def _in_image(path: Path | None) -> Path | None:
    """Where a pod of the process runtime finds one of the slurmd image's scripts: a copy of
    docker/slurmd outside /tmp, one per content. A pod's private /tmp (an emptyDir, as the
    template declares) hides a checkout that lies under /tmp, as CI's may; a real image has its
    scripts in its own root, not in the checkout that built it."""
    if path is None or IMAGE_SOURCES not in Path(path).parents:
        return path
    files = sorted(p for p in IMAGE_SOURCES.iterdir() if p.is_file())
    digest = hashlib.sha256(b"".join(p.name.encode() + b"\0" + p.read_bytes() for p in files)).hexdigest()[:12]
    target = install.ROOT / f"slurmd-image-{digest}"
    if not target.is_dir():
        staging = target.with_name(f"{target.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(IMAGE_SOURCES, staging)
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another environment made it first
            shutil.rmtree(staging, ignore_errors=True)
    return target / Path(path).relative_to(IMAGE_SOURCES)


def _install(path: Path, *, owner: str = "root", group: str = "root", mode: int) -> None:
    """``install -o OWNER -g GROUP -m MODE`` on a file or directory already there."""
    shutil.chown(path, owner, group)
    path.chmod(mode)


def _merge(into: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
