"""The bridge's config file: typed, validated once at load.

One YAML file (default ``/etc/slurm/k8s-bridge.yaml``) says how to reach Kubernetes, where the
slurmd pods find slurmctld, where to log, and which Slurm nodes map to which pod template
(*nodesets*). Every error names the file, the field path and what was expected, in one line.

The schema is a set of :class:`msgspec.Struct` types: msgspec is already loaded by lightkube,
costs ~1 ms, and reports the exact field path of a bad value.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from bridge.errors import ConfigError, UsageError
from bridge import hostlist

DEFAULT_PATH = "/etc/slurm/k8s-bridge.yaml"
ENV_VAR = "SLURM_K8S_BRIDGE_CONFIG"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # Linux IFNAMSIZ: 15 characters

OWNED_ENV = frozenset({"SLURM_NODENAME", "POD_NAME", "SLURMD_GRES", "SLURMD_GPU_COUNT", "SLURMD_GPU_VENDOR",
                       "SLURMD_GPU_SHARING"})
"""Set by the template: a nodeset's ``env`` cannot change them."""
GPU_VISIBILITY_ENV = frozenset({"NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
                                "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"})
"""Would show the pod GPUs other than those Kubernetes allocated (``NVIDIA_VISIBLE_DEVICES=all``
bypasses the device plugin), or hide some of them from Slurm's jobs."""
MIN_QPS = 1.0
"""Below one request a second, a job of a few hundred nodes would wait out ResumeTimeout
behind the bridge's own rate limit."""
SLURMD_MEMORY_MB = 128
"""Default ``memory_overhead_mb``. Measured in a slurmd pod (Slurm 22.05, process runtime,
benchmarks/pod_memory.py): RSS of slurmd 6.4 MiB, munged 4.0 MiB, slurmstepd about 6 MiB per job
step (28 MiB for a batch job with two steps); 128 MiB holds them with a dozen concurrent steps."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A config section: unknown keys are errors, so a typo never silently does nothing."""


class KubernetesSettings(_Strict):
    kubeconfig: str | None = None
    """Path of a kubeconfig file. None with ``in_cluster: false`` uses ``$KUBECONFIG``."""
    context: str | None = None
    """Context within the kubeconfig; None uses its current-context."""
    in_cluster: bool = False
    """Use the pod's service account (when slurmctld itself runs in the cluster)."""
    namespace: str = "slurm"
    """Namespace of the slurmd pods. The bridge never touches another namespace."""
    qps: float = 500.0
    """Client-side rate limit, requests per second: a courtesy, not the bottleneck (the server
    protects itself with API Priority and Fairness, whose 429s are honoured; ``concurrency``
    bounds what is in flight). At 500, 1,000 nodes' pods spend 1 s in the limiter, 5,000 nodes'
    9 s (README, "Tests and figures"); kubectl's 50 made it 16 s and 96 s."""
    burst: int = 500
    """Requests allowed at once before the limiter spaces them at ``qps``."""
    concurrency: int = 20
    """API calls in flight at once, on connections kept open (httpx keeps 20); a job's other
    calls wait their turn before their ``timeout`` starts."""
    timeout: float = 10.0
    """Seconds for any one API call."""
    retry_seconds: float = 20.0
    """How long to keep retrying a transiently failing call (429, 5xx, unreachable)."""


class SlurmSettings(_Strict):
    conf_server: str
    """``host[:port]`` of slurmctld as the pods reach it (configless ``slurmd --conf-server``)."""
    cluster_name: str = "slurm"
    """Slurm ClusterName; labels every pod so two clusters can share a namespace."""
    bin_dir: str = "/usr/bin"
    """Where scontrol is: the hooks run with no PATH."""
    prolog_timeout: float = 300.0
    """Seconds slurm-k8s-prolog waits for a job's nodes to register before letting it go."""


class ResumeSettings(_Strict):
    """How resume follows the pods it created, and what it does when they do not come up."""

    follow: bool = True
    """Follow each job's pods after the hook returns, and fail the job fast."""
    deadline: float = 120.0
    """Seconds a job's pods get to run and register their nodes; keep it well under ResumeTimeout."""
    unschedulable_after: float = 0.0
    """Seconds a pod may stay Unschedulable before the job fails (raise it where a cluster
    autoscaler adds capacity on demand)."""
    cooldown: float = 60.0
    """Seconds before a job whose resume failed for a passing reason may start again."""
    max_attempts: int = 3
    """Failed resumes after which a job is held (with the cause) instead of requeued."""
    state_dir: str = "/var/lib/slurm-k8s-bridge"
    """Where the bridge remembers why a node was set DOWN, to restore the reason after
    Slurm's ResumeTimeout overwrites it."""
    poll: float = 0.5
    """Seconds between two looks at the pods and nodes while following."""
    early_start: bool = True
    """Create a job's pods from slurm-k8s-prolog (PrologSlurmctld) the moment slurmctld allocates
    its powered-down nodes, instead of waiting for the power-save thread's next tick to call
    ResumeProgram (:mod:`bridge.early`)."""


class DaemonSettings(_Strict):
    """``slurm-k8s-bridge daemon``: the long-running process that reconciles Slurm and Kubernetes."""

    tick: float = 5.0
    """Seconds between two looks at Slurm when nothing happens; a change of a pod or a
    Kubernetes node brings the next look forward to at once."""
    confirm: float = 0.0
    """Seconds a missing pod must stay missing before its node is released. 0 is safe: each look
    takes the pods, reads Slurm, then takes the pods and Kubernetes nodes again. A suspend
    changes the node's state before its hook deletes the pod, so the first pods hold the pod of
    any node Slurm still says is up; a pod made while Slurm was read (a slow read, slurmctld busy
    or just restarted, can outlast a slurmd's registration) is in the second."""
    orphan_grace: float = 60.0
    """Seconds a bridge pod may live while its Slurm node is powered down or unknown."""
    stuck_grace: float = 60.0
    """Seconds a node may be POWERING_UP with no pod before it is given back to Slurm."""
    group_grace: float = 60.0
    """Seconds a PodGroup may exist with none of its pods (resume creates it first)."""
    metrics_address: str = "127.0.0.1:9834"
    """``host:port`` of the Prometheus endpoint; empty serves none."""
    heartbeat_fresh: float = 30.0
    """A daemon heartbeat younger than this many seconds counts as a running daemon."""
    breaker_failures: int = 3
    """Capacity failures (pods Unschedulable) of one nodeset within ``breaker_window`` that open its
    circuit breaker: its powered-down nodes are drained so jobs wait instead of looping through
    failed resumes (:mod:`bridge.breaker`). 0 turns the breaker off."""
    breaker_window: float = 600.0
    """Seconds over which capacity failures are counted."""
    breaker_cooldown: float = 300.0
    """Seconds the breaker stays open the first time; doubled each time the probe fails."""
    breaker_max_cooldown: float = 1800.0
    """The longest cool-down."""
    follow: bool = False
    """Follow every resumed job (fail it fast, as the hooks' follower processes do) from the
    state on its pods. While such a daemon's heartbeat is fresh the resume hook starts no
    follower of its own (:func:`bridge.heartbeat.hand_over`)."""
    in_cluster: bool = False
    """The daemon runs in the cluster (docker/daemon/deployment.yaml), sharing no directory with
    the hooks: it holds the Lease ``slurm-k8s-bridge-<cluster_name>`` in the namespace instead of
    the heartbeat file (only its holder acts, so two replicas never both do), and the resume hook
    reads the Lease (one GET) to decide whether to hand following over (:mod:`bridge.lease`).
    Set it in the hooks' config too."""
    lease_duration: float = 15.0
    """Seconds a Lease holder that stops renewing keeps it (client-go's default); it renews
    every third of this."""


class LogSettings(_Strict):
    file: str | None = "/var/log/slurm/k8s-bridge.log"
    """JSON-lines log file; None logs to stderr only."""
    level: Literal["debug", "info", "warning", "error"] = "info"


class GpuSettings(_Strict):
    """How the node's Slurm ``gpu`` Gres becomes a Kubernetes device resource.

    The count always comes from the node's Gres in Slurm, never from this file: the pod asks
    for exactly the GPUs Slurm will hand to jobs, so the two cannot disagree.
    """

    vendor: Literal["nvidia", "amd"] = "nvidia"
    """Whose device plugin serves the GPUs: ``nvidia.com/gpu`` or ``amd.com/gpu``."""
    sharing: Literal["none", "mig", "time-slicing"] = "none"
    """``none``: whole GPUs. ``mig``: MIG slices, mixed strategy; the profile is the Gres type
    (``Gres=gpu:1g.10gb:1`` → ``nvidia.com/mig-1g.10gb``). ``time-slicing``: a replica of a
    shared GPU (``nvidia.com/gpu.shared``, the device plugin's ``renameByDefault``); Slurm's
    Gres must then be ``gpu:1``, as two replicas may be the same GPU."""
    resource: str | None = None
    """Overrides the resource name, e.g. ``nvidia.com/gpu`` for time-slicing without
    ``renameByDefault``, or with ``sharing: mig`` the single strategy (slices advertised as
    ``nvidia.com/gpu``)."""


class NetworkAttachment(_Strict):
    """One secondary interface through Multus (SR-IOV, RDMA)."""

    name: str
    """The NetworkAttachmentDefinition's name."""
    resource: str
    """The device resource behind it: the NetworkAttachmentDefinition's
    ``k8s.v1.cni.cncf.io/resourceName`` annotation, e.g. ``nvidia.com/rdma_ib0``. The pod
    requests one per attachment, in requests and limits."""
    namespace: str | None = None
    """Namespace of the NetworkAttachmentDefinition; None: the pods' own."""
    interface: str | None = None
    """Interface name in the pod (``net1``...); None lets Multus choose."""
    rdma: bool = False
    """RDMA over this interface: the container gets ``IPC_LOCK`` to pin memory for verbs."""


class Hugepages(_Strict):
    """Huge pages for the slurmd container, mounted at ``/dev/hugepages`` (``medium: HugePages``)."""

    size: Literal["2Mi", "1Gi"]
    """Page size: the resource is ``hugepages-<size>``."""
    pages: int
    """How many pages; requests == limits. Not part of RealMemory: Kubernetes counts them apart."""


class Capacity(_Strict):
    """Which capacity pool (spot or on-demand) the nodeset's pods may run on."""

    type: Literal["spot", "on-demand"]
    label: str = "karpenter.sh/capacity-type"
    """Node label that names the pool (Karpenter's by default; EKS managed node groups use
    ``eks.amazonaws.com/capacityType``, GKE ``cloud.google.com/gke-spot``)."""
    value: str | None = None
    """The label's value for this pool; None: ``type`` itself (``spot``, ``on-demand``)."""
    taint: str | None = None
    """Key of a NoSchedule taint the pool's nodes carry (e.g. AKS's
    ``kubernetes.azure.com/scalesetpriority``); the pods tolerate it."""


class Warm(_Strict):
    """A warm pool: idle nodes of the nodeset kept powered up so a job starts at static speed
    (:mod:`bridge.warmpool` sizes it, the daemon keeps it; README "Warm pool")."""

    min: int = 0
    """Idle nodes kept up whatever the demand (0: scale to zero when quiet)."""
    max: int = 0
    """At most this many idle nodes kept up (0: no warm pool)."""
    horizon: float = 60.0
    """Seconds of expected demand the pool covers: about how long a new pod takes to register."""
    hold: float = 3600.0
    """Idle node-seconds one warm start is worth: ``m`` idle nodes are held while jobs of at most
    ``m`` nodes arrive at least once every ``hold / m`` seconds."""
    linger: float = 600.0
    """Seconds an idle node beyond the target stays up before the daemon powers it down."""
    quiet_after: float = 3600.0
    """With no job for this long (and none expected at this hour), the pool shrinks to ``min``."""
    idle_share: float = 0.10
    """Idle pod-time is steered toward this share of busy pod-time over about a day (0: not
    steered): above it the pool and ``linger`` shrink in proportion. A target, not a hard cap:
    boots of powered-down nodes count as idle too (README "Warm pool")."""
    idle_hours_per_day: float | None = None
    """A cap (None: none) on the pool's idle pod-hours over the last 24 hours (its nodes up and
    idle; boots and drained nodes are not counted). The pool holds no more nodes than the whole
    hours left under it; once they are spent, it holds only ``min`` nodes, powers idle nodes
    beyond them down at once and starts no node ahead of a planned job, until old hours roll
    off. ``min`` is kept whatever the cap, so the cap must exceed ``24 × min``."""
    pool: str | None = None
    """Nodesets that name the same pool share one warm pool (None: the nodeset's own, named
    after it): demand is learned over all their nodes and one target is kept, on the cheapest
    capacity first. A nodeset with ``capacity.type: spot`` is cheaper than one on on-demand or
    unmarked capacity; among equals, the first in the config. The pool powers up the cheaper
    nodes first, falls back to dearer ones while the cheaper cannot be powered up (DOWN, DRAIN,
    capacity breaker open), powers the dearer down first, and swaps a dearer idle node for a
    cheaper one once it has lingered (one node over ``max`` while it starts, if the pool is
    full). The members' other ``warm`` settings must be equal. A pool named after a nodeset
    must include that nodeset (it names the pool too)."""


class Gang(_Strict):
    """All-or-nothing scheduling of one job's pods on the Kubernetes side, so two jobs never
    each hold part of what both need (the gang deadlock)."""

    kind: Literal["volcano", "coscheduling", "kueue"]
    """Volcano PodGroup, scheduler-plugins coscheduling PodGroup, or Kueue plain-pod groups."""
    queue: str | None = None
    """Volcano queue, or Kueue LocalQueue (required for kueue)."""
    scheduler_name: str | None = None
    """schedulerName of the pods; default ``volcano`` for volcano, ``scheduler-plugins-scheduler``
    for coscheduling, the cluster's default for kueue."""


# --- The researcher's view inside the pod: site filesystems, users, /tmp, limits, cgroups ---

RESERVED_MOUNTS = ("/etc/munge", "/run/munge", "/run/munged", "/var/spool/slurmd", "/var/log/slurm",
                   "/etc/slurm", "/etc/slurm-k8s-bridge", "/dev/hugepages", "/tmp")
"""Paths the image's entrypoint, slurmd or the template itself use: a filesystem may not be
mounted on, above or inside them (the munge key, munged's socket, slurmd's spool and config,
the users' data), except inside the node's private /tmp, where a mount hides nothing."""
SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys",
               "/usr", "/var")
"""Mounting one of these (or above one) would replace the image's own system: refused."""
OWNED_ENV = OWNED_ENV | {"SLURMD_RDMA_NETWORKS", "SLURMD_CGROUPS"}
USERS_DIR = "/etc/slurm-k8s-bridge/users"
"""Where the pod sees the users' ``passwd`` and ``group`` (see :class:`Users`)."""


class Nfs(_Strict):
    """An NFS export the kubelet mounts for the pod (the Kubernetes node needs an NFS client)."""

    server: str
    """Host name or IP address of the NFS server."""
    path: str
    """The exported directory on the server, absolute."""


class Filesystem(_Strict):
    """A site filesystem (home, scratch, projects, software) in every pod of the nodeset, at the
    same path as on the submit host, so a job's working directory and output files are the
    user's own. Exactly one of ``host_path``, ``nfs``, ``claim`` says where it comes from."""

    name: str
    """Short name, unique in the nodeset: the pod's volume is ``fs-<name>`` (a DNS-1123 label)."""
    path: str
    """Where jobs see it in the pod: absolute, the same path as on the submit host."""
    host_path: str | None = None
    """A directory every Kubernetes node already mounts (Lustre, GPFS, NFS or autofs mounted by
    the node's OS). The pod fails to start (FailedMount) if it is missing: an empty directory in
    its place would swallow the jobs' output."""
    nfs: Nfs | None = None
    """An NFS export mounted by the kubelet."""
    claim: str | None = None
    """A ReadWriteMany PersistentVolumeClaim in the pods' namespace (CephFS, NFS CSI...)."""
    read_only: bool = False
    """Mounted read-only (``/apps``, ``/opt/software``)."""
    mount_propagation: Literal["None", "HostToContainer"] = "None"
    """``HostToContainer`` for autofs or anything the node mounts after the pod started
    (``host_path`` only). ``Bidirectional`` needs a privileged container: not offered."""

    def volume(self) -> dict[str, Any]:
        """The pod's volume (values checked at load; the template writes it through tojson)."""
        if self.host_path is not None:
            return {"name": f"fs-{self.name}", "hostPath": {"path": self.host_path, "type": "Directory"}}
        if self.nfs is not None:
            return {"name": f"fs-{self.name}",
                    "nfs": {"server": self.nfs.server, "path": self.nfs.path, "readOnly": self.read_only}}
        return {"name": f"fs-{self.name}",
                "persistentVolumeClaim": {"claimName": self.claim, "readOnly": self.read_only}}

    def mount(self) -> dict[str, Any]:
        """The slurmd container's volumeMount."""
        mount: dict[str, Any] = {"name": f"fs-{self.name}", "mountPath": self.path, "readOnly": self.read_only}
        if self.mount_propagation != "None":
            mount["mountPropagation"] = self.mount_propagation
        return mount


class Users(_Strict):
    """The site's users and groups, for jobs to run as their submitter with names resolvable
    (``id``, ``ls -l``, ``getent passwd alice``). The admin creates the object from the site's
    own data, e.g. ``getent passwd`` and ``getent group`` filtered to the users' id range
    (docs/hpc-nodes.md#users-and-groups); it is mounted at ``/etc/slurm-k8s-bridge/users`` and
    the image's entrypoint adds its ``passwd`` and ``group`` lines to the pod's own files.
    Exactly one of ``config_map``, ``secret``."""

    config_map: str | None = None
    """A ConfigMap with keys ``passwd`` and ``group`` (``/etc/passwd`` and ``/etc/group`` lines)."""
    secret: str | None = None
    """A Secret with the same keys, where a site treats its user list as confidential."""


class Nodeset(_Strict):
    """Which Slurm nodes become which pods."""

    name: str
    """Short name, used in labels: a DNS-1123 label."""
    nodes: str
    """Hostlist expression of the Slurm nodes in this nodeset, e.g. ``gpu[001-128]``."""
    image: str
    """The slurmd image; its Slurm version must match slurmctld's."""
    template: str = "slurmd.yaml.j2"
    """Pod template file in ``templates_dir`` (or an absolute path)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = []
    """Names of Secrets for a private registry."""
    munge_secret: str = "munge-key"
    """Secret holding ``munge.key``, mounted into every pod."""
    memory_overhead_mb: int = SLURMD_MEMORY_MB
    """The one memory rule: pod memory limit = the node's RealMemory + this. The default leaves
    room for slurmd, munged and a slurmstepd per job step beside a job that uses all of
    RealMemory (see :data:`SLURMD_MEMORY_MB`)."""
    cpu_pinning: bool = False
    """Exclusive cores: the pod must be in the Guaranteed QoS class with whole CPUs, so a node
    without CPUs or RealMemory in Slurm is an error (the kubelet needs the static CPU manager)."""
    hugepages: Hugepages | None = None
    gpus: GpuSettings = GpuSettings()
    networks: list[NetworkAttachment] = []
    """Secondary networks (Multus), in order: ``net1``, ``net2``... unless named."""
    host_network: bool = False
    """Run the pod on the host's network (dnsPolicy ClusterFirstWithHostNet)."""
    slurmd_port: int = 6818
    """slurmd's port (SlurmdPort): with ``host_network`` a hostPort, so two pods never share a host."""
    subdomain: str | None = None
    """A headless Service's name: the pod is ``<hostname>.<subdomain>.<namespace>.svc``, and
    short node names resolve between pods (see examples/slurmd-service.yaml)."""
    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain, for the pods' search path when ``subdomain`` is set."""
    node_selector: dict[str, str] = {}
    affinity: dict[str, Any] = {}
    """A Kubernetes ``affinity`` (nodeAffinity, podAffinity, podAntiAffinity), as is."""
    tolerations: list[dict[str, Any]] = []
    topology_spread: list[dict[str, Any]] = []
    """``topologySpreadConstraints``; a constraint without ``labelSelector`` counts this
    nodeset's pods."""
    capacity: Capacity | None = None
    labels: dict[str, str] = {}
    """Extra pod labels (the bridge's own labels cannot be overridden)."""
    annotations: dict[str, str] = {}
    service_account: str | None = None
    priority_class: str | None = None
    runtime_class: str | None = None
    """RuntimeClass, e.g. ``nvidia`` where the GPU runtime is not containerd's default."""
    termination_grace_period: int = 30
    warm: Warm = Warm()
    """Warm pool of idle powered-up nodes; none by default (``max: 0``)."""
    gang: Gang | None = None
    """Gang-schedule the pods of one job (per nodeset); none by default."""
    dcgm_job_mapping_dir: Annotated[str, msgspec.Meta(pattern="^/")] | None = None
    """Host directory for DCGM's HPC job mapping (dcgm-exporter ``--hpc-job-mapping-dir``): a
    hostPath the pod's Prolog/Epilog write job ids into, so GPU metrics carry ``hpc_job``. None:
    no mapping (docs/hpc-nodes.md, "GPU metrics per job")."""
    drain_on_stop: bool = True
    """A preStop hook powers the Slurm node down (POWER_DOWN_FORCE) when Kubernetes (not the
    bridge) stops the pod: eviction, spot reclaim, node drain, a delete by hand. Slurm requeues
    its jobs at once instead of leaving them RUNNING on a node with no slurmd."""
    slurmd_args: list[str] = []
    """Extra arguments for slurmd after the ones the template sets."""
    env: dict[str, str] = {}
    """Extra environment variables for the slurmd container."""
    values: dict[str, Any] = {}
    """Free-form values for a site's own templates (``nodeset.values`` in Jinja)."""
    # --- the researcher's view inside the pod ---
    filesystems: list[Filesystem] = []
    """Site filesystems mounted in every pod, at the submit host's paths (home, scratch, ...)."""
    users: Users | None = None
    """Where the pod finds the site's users and groups; None: only the image's own."""
    tmp_size: str = "10Gi"
    """Size limit of the node's private ``/tmp`` (an emptyDir, gone with the pod); the kubelet
    evicts the pod past it."""
    cgroups: bool = False
    """Run slurmd's cgroup plugins (``ProctrackType=proctrack/cgroup``, ``TaskPlugin=task/cgroup``)
    in these pods. On cgroup v1 that needs a writable cgroupfs, which only ``privileged: true``
    gives: the template renders it, and the image's entrypoint refuses to start slurmd (exit 6,
    one line) where the controllers are not writable (docs/hpc-nodes.md#cgroups). False: the
    pods cannot run them, and ``check`` fails a slurm.conf that uses them."""
    cgroup_plugins: bool | None = None
    """The old name of ``cgroups``: refused at load with a line saying so."""


class Config(_Strict):
    slurm: SlurmSettings
    nodesets: list[Nodeset]
    kubernetes: KubernetesSettings = KubernetesSettings()
    log: LogSettings = LogSettings()
    resume: ResumeSettings = ResumeSettings()
    daemon: DaemonSettings = DaemonSettings()
    templates_dir: str | None = None
    """Directory of pod templates; None uses the ones shipped with the bridge."""
    path: str = ""
    """The file this was read from (set by :func:`load`)."""

    def nodeset_for(self, node: str) -> Nodeset:
        """The first nodeset whose hostlist holds ``node``.

        Raises:
            ConfigError: no nodeset names the node.
        """
        for nodeset in self.nodesets:
            if hostlist.contains(nodeset.nodes, node):
                return nodeset
        raise ConfigError(f"{self.path}: no nodeset matches node {node!r}")

    def is_elastic(self, node: str) -> bool:
        """Whether a nodeset names ``node`` (else it is a static node the bridge never powers up)."""
        return any(hostlist.contains(nodeset.nodes, node) for nodeset in self.nodesets)

    def template_path(self, nodeset: Nodeset) -> Path:
        return Path(self.templates_dir or default_templates_dir()) / nodeset.template


@functools.cache
def default_templates_dir() -> str:
    """The templates shipped with the bridge: in an install, the package data
    ``bridge/pod_templates`` (built from the repository's ``pod-templates/``, see
    pyproject.toml); in a source checkout, ``pod-templates/`` itself."""
    from importlib.resources import files

    shipped = files("bridge") / "pod_templates"
    if shipped.is_dir():
        return str(shipped)
    return str(Path(__file__).resolve().parent.parent / "pod-templates")


def _is_file(path: Path) -> bool:
    """A directory that cannot be entered is as good as no file (load then says why)."""
    try:
        return path.is_file()
    except OSError:
        return False


def resolve_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Which config file to read: ``--config``, then ``$SLURM_K8S_BRIDGE_CONFIG``, then
    ``k8s-bridge.yaml`` beside ``$SLURM_CONF`` (the only variable Slurm gives its hooks) where
    that file exists, then :data:`DEFAULT_PATH`. ``environ``: whose variables (``os.environ``;
    ``check`` passes the hooks' own)."""
    environ = os.environ if environ is None else environ
    if explicit:
        return explicit
    if environ.get(ENV_VAR):
        return environ[ENV_VAR]
    if environ.get("SLURM_CONF"):
        beside = Path(environ["SLURM_CONF"]).parent / "k8s-bridge.yaml"
        if _is_file(beside) or not _is_file(Path(DEFAULT_PATH)):
            return str(beside)
    return DEFAULT_PATH


def load(path: str | None = None) -> Config:
    """Read and validate the config file.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or a value is invalid;
            the message names the file, the field and what was expected.
    """
    explicit = path
    path = resolve_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        how = "" if explicit or os.environ.get(ENV_VAR) else (
            f" (the hooks read k8s-bridge.yaml beside $SLURM_CONF, the only variable Slurm gives them, "
            f"else {DEFAULT_PATH}; the CLI also takes --config or ${ENV_VAR})")
        if not explicit and not os.environ.get(ENV_VAR) and path != DEFAULT_PATH:
            how = f", nor {DEFAULT_PATH}{how}"
        raise ConfigError(f"{path}: no such file{how}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return parse(text, path=path)


def slurm_bin_dir_anyway(path: str | None = None) -> str:
    """``slurm.bin_dir`` from a config file that did not load (a typo elsewhere in it), so a hook
    can still give its nodes back with the site's scontrol; Slurm's default where it has none."""
    import yaml

    try:
        data = yaml.safe_load(Path(resolve_path(path)).read_text(encoding="utf-8"))
        bin_dir = data["slurm"]["bin_dir"]
    except Exception:  # noqa: BLE001 - any shape at all: the default is the answer
        return "/usr/bin"
    return bin_dir if isinstance(bin_dir, str) and _is_clean_absolute(bin_dir) and Path(bin_dir).is_dir() \
        else "/usr/bin"


def parse(text: str, *, path: str = "<config>") -> Config:
    """Validate config text (see :func:`load`)."""
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{path}:{where} not valid YAML: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty (expected the bridge's settings; see examples/)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top, got {type(data).__name__}")
    try:
        config = msgspec.convert({**data, "path": path}, Config)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{path}: {_field_error(str(e))}") from None
    _check(config)
    return config


def _field_error(message: str) -> str:
    """msgspec says ``Expected `int`, got `str` - at `$.nodesets[0].qps```; we say
    ``nodesets[0].qps: expected `int`, got `str```."""
    text, _, where = message.partition(" - at `$")
    where = where.rstrip("`").lstrip(".")
    text = text[0].lower() + text[1:] if text else text
    if text.startswith("invalid enum value"):
        choices = _choices(where)  # msgspec does not say which values it would take
        text += f"; expected one of {', '.join(map(repr, choices))}" if choices else ""
    return f"{where}: {text}" if where else text


def _choices(where: str) -> tuple[Any, ...]:
    """The values a ``Literal`` field at ``where`` (``nodesets[0].gpus.sharing``) accepts."""
    import types
    import typing

    kind: Any = Config
    for part in re.findall(r"\[\d+\]|[^.\[\]]+", where):
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None → X
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if part.startswith("["):
            kind = typing.get_args(kind)[0] if typing.get_args(kind) else Any
        elif isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            kind = typing.get_type_hints(kind).get(part, Any)
        else:
            return ()
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else ()


_DAEMON_AT_LEAST_0 = ("confirm", "orphan_grace", "stuck_grace", "group_grace", "heartbeat_fresh", "breaker_failures",
                      "breaker_window", "breaker_cooldown", "breaker_max_cooldown")


def _check_address(address: str, where: str) -> None:
    """``host:port`` as the daemon listens on it (``[::1]:9834``, ``:9834`` for every address);
    empty for none."""
    if not address:
        return
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or len(port) > 5 or int(port) > 65535 \
            or host.startswith("[") != host.endswith("]") or any(c.isspace() for c in host):
        raise ConfigError(f"{where}: expected host:port (127.0.0.1:9834, [::1]:9834, :9834), or '' for no "
                          f"endpoint; got {address!r}")


def _check(config: Config) -> None:
    """The rules a type cannot say."""
    path = config.path
    if not _DNS_LABEL.match(config.kubernetes.namespace):
        raise ConfigError(f"{path}: kubernetes.namespace: expected a DNS-1123 label, got {config.kubernetes.namespace!r}")
    for section in ("kubernetes", "resume", "slurm", "daemon"):  # NaN passes every comparison, inf every bound
        for name, value in msgspec.structs.asdict(getattr(config, section)).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{path}: {section}.{name}: expected a finite number, got {value!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > 1e9:
                # No setting wants more (1e9 s is 31 years); Python's own timeouts overflow near 9.2e9.
                raise ConfigError(f"{path}: {section}.{name}: expected at most 1000000000, got {value!r}")
    if config.kubernetes.concurrency < 1:
        raise ConfigError(f"{path}: kubernetes.concurrency: expected at least 1, "
                          f"got {config.kubernetes.concurrency}")
    for where, value, low in (("kubernetes.qps", config.kubernetes.qps, MIN_QPS),
                              ("kubernetes.burst", config.kubernetes.burst, 1),
                              ("kubernetes.timeout", config.kubernetes.timeout, 0.001),
                              ("kubernetes.retry_seconds", config.kubernetes.retry_seconds, 0),
                              ("resume.deadline", config.resume.deadline, 0.001),
                              ("resume.poll", config.resume.poll, 0.05),
                              ("resume.cooldown", config.resume.cooldown, 0),
                              ("resume.unschedulable_after", config.resume.unschedulable_after, 0),
                              ("resume.max_attempts", config.resume.max_attempts, 1),
                              ("slurm.prolog_timeout", config.slurm.prolog_timeout, 0),
                              ("daemon.tick", config.daemon.tick, 0.1),
                              ("daemon.lease_duration", config.daemon.lease_duration, 1),
                              *((f"daemon.{name}", getattr(config.daemon, name), 0) for name in _DAEMON_AT_LEAST_0)):
        if value < low:
            raise ConfigError(f"{path}: {where}: expected at least {low:g}, got {value!r}")
    _check_address(config.daemon.metrics_address, f"{path}: daemon.metrics_address")
    if not config.nodesets:
        raise ConfigError(f"{path}: nodesets: expected at least one nodeset")
    seen: set[str] = set()
    for i, nodeset in enumerate(config.nodesets):
        where = f"{path}: nodesets[{i}]"
        if not _DNS_LABEL.match(nodeset.name) or len(nodeset.name) > 63:
            raise ConfigError(f"{where}.name: expected a DNS-1123 label, got {nodeset.name!r}")
        if nodeset.name in seen:
            raise ConfigError(f"{where}.name: nodeset {nodeset.name!r} is defined twice")
        seen.add(nodeset.name)
        try:
            hostlist.check(nodeset.nodes)  # parse only: every hook loads this config
        except UsageError as e:
            raise ConfigError(f"{where}.nodes: {e}") from None
        template = config.template_path(nodeset)
        try:
            found = template.is_file()
        except OSError as e:  # a directory SlurmUser cannot enter, a name too long
            raise ConfigError(f"{where}.template: cannot read {str(template)!r}: {e.strerror}") from None
        if not found:
            raise ConfigError(f"{where}.template: no template {str(template)!r}")
        _check_nodeset(nodeset, where)
    _check_warm_pools(config)


def _check_nodeset(nodeset: Nodeset, where: str) -> None:
    """A nodeset's own rules; each error is ``<file>: nodesets[i].<field>: expected ...``."""
    _check_pod_fields(nodeset, where)
    _check_gpus(nodeset.gpus, f"{where}.gpus")
    _check_networks(nodeset.networks, f"{where}.networks")
    if nodeset.hugepages is not None and nodeset.hugepages.pages < 1:
        raise ConfigError(f"{where}.hugepages.pages: expected at least 1, got {nodeset.hugepages.pages}")
    if nodeset.capacity is not None:
        _check_capacity(nodeset.capacity, nodeset.node_selector, f"{where}.capacity")
    if nodeset.gang is not None:
        _check_gang(nodeset.gang, f"{where}.gang")
    _check_warm(nodeset, f"{where}.warm")
    _check_env_and_args(nodeset, where)
    _check_researcher_view(nodeset, where)
    if nodeset.networks and "k8s.v1.cni.cncf.io/networks" in nodeset.annotations:
        raise ConfigError(f"{where}.annotations: k8s.v1.cni.cncf.io/networks is written from networks; "
                          f"expected one or the other")


def _check_warm(nodeset: Nodeset, where: str) -> None:
    warm = nodeset.warm
    for field in ("horizon", "hold", "linger", "quiet_after", "idle_share", "idle_hours_per_day"):
        value = getattr(warm, field)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where}.{field}: expected 0 or more, got {value:g}")
    if warm.pool is not None and (not _DNS_LABEL.match(warm.pool) or len(warm.pool) > 63):
        raise ConfigError(f"{where}.pool: expected a DNS-1123 label, got {warm.pool!r}")
    if warm.idle_hours_per_day is not None and warm.idle_hours_per_day <= 24 * warm.min:
        why = "(the min nodes alone spend that)" if warm.min else "(leave it out for no cap; max: 0 for no pool)"
        raise ConfigError(f"{where}.idle_hours_per_day: expected more than 24 x min = {24 * warm.min} {why}, "
                          f"got {warm.idle_hours_per_day:g}")


def price_rank(nodeset: Nodeset) -> int:
    """0 for spot capacity, 1 for on-demand or unmarked: a warm pool keeps the cheaper first."""
    return 0 if nodeset.capacity is not None and nodeset.capacity.type == "spot" else 1


def warm_pools(nodesets: list[Nodeset]) -> dict[str, list[Nodeset]]:
    """Each warm pool's name and its nodesets, cheapest capacity first (spot before on-demand or
    unmarked, then the config's order); nodesets without a pool (``warm.max`` 0) are left out."""
    pools: dict[str, list[Nodeset]] = {}
    for nodeset in nodesets:
        pools.setdefault(nodeset.warm.pool or nodeset.name, []).append(nodeset)
    return {name: sorted(members, key=price_rank)
            for name, members in pools.items() if members[0].warm.max > 0}


def first_claims(expanded: list[list[str]]) -> dict[str, int]:
    """Each node's nodeset, by index, from the nodesets' expanded hostlists in config order: the
    first that names it (:meth:`Config.nodeset_for`)."""
    first: dict[str, int] = {}
    for i, nodes in enumerate(expanded):
        for node in nodes:
            first.setdefault(node, i)
    return first


def _check_warm_pools(config: Config) -> None:
    """A shared pool's members agree on its settings, and min <= max <= the pool's nodes."""
    pools: dict[str, list[tuple[int, Nodeset]]] = {}
    for i, nodeset in enumerate(config.nodesets):
        pools.setdefault(nodeset.warm.pool or nodeset.name, []).append((i, nodeset))
    names = {nodeset.name: i for i, nodeset in enumerate(config.nodesets)}
    for i, nodeset in enumerate(config.nodesets):
        pool = nodeset.warm.pool
        if pool is not None and pool != nodeset.name and pool in names \
                and config.nodesets[names[pool]].warm.pool != pool:
            raise ConfigError(f"{config.path}: nodesets[{i}].warm.pool: {pool!r} is the name of nodesets"
                              f"[{names[pool]}], which does not share it; expected another name, or "
                              f"warm.pool: {pool} on that nodeset too")
    if not any(nodeset.warm.max > 0 for nodeset in config.nodesets):
        for i, nodeset in enumerate(config.nodesets):  # no pool: min and max must be 0 (the hooks skip the expansion)
            if not 0 <= nodeset.warm.min <= nodeset.warm.max:
                raise ConfigError(f"{config.path}: nodesets[{i}].warm: expected 0 <= min <= max, got min "
                                  f"{nodeset.warm.min}, max {nodeset.warm.max}")
        return
    expanded = [hostlist.expand(nodeset.nodes) for nodeset in config.nodesets]  # once each: every hook loads this
    first = first_claims(expanded)
    for j, nodeset in enumerate(config.nodesets):
        # A pool counts its nodeset's nodes: one that goes to an earlier nodeset is not the
        # pool's to power up (and two pools would both count it). A later catch-all is fine.
        if nodeset.warm.max > 0 and (node := next((n for n in expanded[j] if first[n] != j), None)):
            raise ConfigError(f"{config.path}: nodesets[{j}].nodes: {node} goes to nodesets[{first[node]}], "
                              f"which names it first; a warm pool's nodes must be its nodeset's own (list the "
                              f"pool's nodeset first, or take {node} out of one)")
    for name, members in pools.items():
        (i, first), size = members[0], sum(len(expanded[k]) for k, _ in members)
        settings = {**msgspec.structs.asdict(first.warm), "pool": None}
        for j, other in members[1:]:
            if {**msgspec.structs.asdict(other.warm), "pool": None} != settings:
                raise ConfigError(f"{config.path}: nodesets[{j}].warm: expected the same settings as "
                                  f"nodesets[{i}] ({first.name!r}), which shares warm pool {name!r}")
        warm, what = first.warm, "the nodeset's nodes" if len(members) == 1 else f"the nodes of pool {name!r}"
        if not 0 <= warm.min <= warm.max <= size:
            raise ConfigError(f"{config.path}: nodesets[{i}].warm: expected 0 <= min <= max <= {size} "
                              f"({what}), got min {warm.min}, max {warm.max}")


def _check_researcher_view(nodeset: Nodeset, where: str) -> None:
    """Filesystems, users, /tmp and cgroups: each error names its field."""
    _check_filesystems(nodeset.filesystems, f"{where}.filesystems")
    if nodeset.users is not None:
        users = nodeset.users
        if (users.config_map is None) == (users.secret is None):
            raise ConfigError(f"{where}.users: expected exactly one of config_map, secret")
        for field in ("config_map", "secret"):
            _expect(_is_subdomain(getattr(users, field)), f"{where}.users.{field}", "a DNS-1123 subdomain",
                    getattr(users, field))
    from bridge.validate import quantity

    size = quantity(nodeset.tmp_size)
    _expect(size is not None and size > 0, f"{where}.tmp_size", "a positive quantity like '10Gi'", nodeset.tmp_size)
    if nodeset.cgroup_plugins is not None:
        raise ConfigError(f"{where}.cgroup_plugins: renamed; use cgroups: true to run slurmd's cgroup "
                          f"plugins in privileged pods, or leave it out (docs/hpc-nodes.md#cgroups)")


def _check_filesystems(filesystems: list[Filesystem], where: str) -> None:
    names: set[str] = set()
    paths: set[str] = set()
    for i, fs in enumerate(filesystems):
        here = f"{where}[{i}]"
        _expect(bool(_DNS_LABEL.match(fs.name)) and len(fs.name) <= 60, f"{here}.name",
                "a DNS-1123 label of at most 60 characters", fs.name)
        if fs.name in names:
            raise ConfigError(f"{here}.name: {fs.name!r} is used by an earlier filesystem")
        names.add(fs.name)
        _check_mount_path(fs.path, f"{here}.path")
        if fs.path in paths:
            raise ConfigError(f"{here}.path: {fs.path!r} is mounted by an earlier filesystem")
        paths.add(fs.path)
        _check_source(fs, here)


def _check_mount_path(path: str, where: str) -> None:
    _expect(_is_clean_absolute(path), where, "an absolute path without '..', '//' or a trailing '/'", path)
    for system in SYSTEM_DIRS:
        if _is_within(path, system):
            raise ConfigError(f"{where}: {path!r} would hide the image's {system}; expected a site path "
                              f"such as /home or /scratch")
    for owned in RESERVED_MOUNTS:
        if (_is_within(owned, path) and owned != "/tmp") or _is_within(path, owned):
            raise ConfigError(f"{where}: {path!r} would mount over {owned}, which the slurmd pod uses itself")


def _check_source(fs: Filesystem, here: str) -> None:
    sources = [name for name in ("host_path", "nfs", "claim") if getattr(fs, name) is not None]
    if len(sources) != 1:
        raise ConfigError(f"{here}: expected exactly one of host_path, nfs, claim, got "
                          f"{', '.join(sources) if sources else 'none'}")
    if fs.host_path is not None:
        _expect(_is_clean_absolute(fs.host_path) and fs.host_path != "/", f"{here}.host_path",
                "an absolute directory other than /", fs.host_path)
    if fs.nfs is not None:
        _expect(_is_server(fs.nfs.server), f"{here}.nfs.server", "an NFS server's host name or IP address",
                fs.nfs.server)
        _expect(_is_clean_absolute(fs.nfs.path), f"{here}.nfs.path", "an absolute exported path", fs.nfs.path)
    if fs.claim is not None:
        _expect(_is_subdomain(fs.claim) and bool(fs.claim), f"{here}.claim",
                "a PersistentVolumeClaim name (DNS-1123 subdomain)", fs.claim)
    if fs.mount_propagation != "None" and fs.host_path is None:
        raise ConfigError(f"{here}.mount_propagation: expected 'None' unless host_path is set "
                          f"(the node's own mounts are what propagates)")


def _is_clean_absolute(path: str) -> bool:
    import posixpath

    return path.startswith("/") and posixpath.normpath(path) == path and "\0" not in path and not path.startswith("//")


def _is_within(outer: str, path: str) -> bool:
    """``path`` is ``outer`` or below it."""
    return path == outer or path.startswith(outer.rstrip("/") + "/")


def _is_server(server: str) -> bool:
    """A host name, an IPv4 or an IPv6 address (what the kubelet passes to mount.nfs)."""
    import ipaddress

    if not server or any(c.isspace() for c in server):
        return False
    try:
        ipaddress.ip_address(server.strip("[]"))
        return True
    except ValueError:
        return ":" not in server and "/" not in server


def _check_pod_fields(nodeset: Nodeset, where: str) -> None:
    if nodeset.memory_overhead_mb < 0:
        raise ConfigError(f"{where}.memory_overhead_mb: expected 0 or more, got {nodeset.memory_overhead_mb}")
    if nodeset.termination_grace_period < 0:
        raise ConfigError(f"{where}.termination_grace_period: expected 0 or more seconds")
    if not 1 <= nodeset.slurmd_port <= 65535:
        raise ConfigError(f"{where}.slurmd_port: expected a port 1-65535, got {nodeset.slurmd_port}")
    _expect(_is_label(nodeset.subdomain), f"{where}.subdomain", "a DNS-1123 label", nodeset.subdomain)
    for field in ("munge_secret", "service_account", "priority_class", "runtime_class", "cluster_domain"):
        _expect(_is_subdomain(getattr(nodeset, field)), f"{where}.{field}", "a DNS-1123 subdomain",
                getattr(nodeset, field))
    for i, secret in enumerate(nodeset.image_pull_secrets):
        _expect(_is_subdomain(secret), f"{where}.image_pull_secrets[{i}]", "a DNS-1123 subdomain", secret)
    for key, value in {**nodeset.labels, **nodeset.node_selector}.items():
        field = "labels" if key in nodeset.labels else "node_selector"
        _expect(is_qualified_name(key), f"{where}.{field}", "label keys like 'example.com/name'", key)
        _expect(len(value) <= 63 and bool(_LABEL_VALUE.match(value)), f"{where}.{field}.{key}",
                "a label value (63 characters of [A-Za-z0-9-_.])", value)
    for key in nodeset.annotations:
        _expect(is_qualified_name(key), f"{where}.annotations", "annotation keys like 'example.com/name'", key)
    _check_spread(nodeset, where)
    _check_affinity(nodeset.affinity, f"{where}.affinity")


# Placement as kube-apiserver validates it (validateTopologySpreadConstraints, validateAffinity):
# a constraint it refuses would fail every resume of the nodeset, after Slurm chose its nodes.
# A null field is an unset one, as the server decodes it; a number where a string belongs is
# refused here as there ("cannot unmarshal number"), with the hint to quote it.
_SELECTOR_OPERATORS = {"In": "some values", "NotIn": "some values", "Exists": "no values", "DoesNotExist": "no values"}
_NODE_OPERATORS = {**_SELECTOR_OPERATORS, "Gt": "one value", "Lt": "one value"}


def _as_map(value: Any, at: str, what: str) -> Mapping[str, Any]:
    _expect(value is None or isinstance(value, Mapping), at, what, value)
    return value or {}


def _as_list(value: Any, at: str, what: str) -> list[Any]:
    _expect(value is None or isinstance(value, list), at, what, value)
    return value or []


def _string(value: Any, at: str, what: str) -> str:
    """A string field (null is the empty string, as the server decodes it)."""
    if value is None:
        return ""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    _expect(isinstance(value, str), at, f"{what} (quote a number: '8')" if number else what, value)
    return value


def _check_spread(nodeset: Nodeset, where: str) -> None:
    from bridge import naming  # the selector the bridge writes where the admin gives none

    pairs: set[tuple[Any, Any]] = set()
    for i, spread in enumerate(nodeset.topology_spread):
        at = f"{where}.topology_spread[{i}]"
        spread = _as_map(spread, at, "a topology spread constraint (maxSkew, topologyKey, whenUnsatisfiable)")
        skew, key, action = spread.get("maxSkew"), spread.get("topologyKey"), spread.get("whenUnsatisfiable")
        _expect(type(skew) is int and skew > 0, f"{at}.maxSkew", "a whole number above 0", skew)
        _expect(isinstance(key, str) and key != "", f"{at}.topologyKey", "a node label key like "
                "'topology.kubernetes.io/zone'", key)
        _expect(action in ("DoNotSchedule", "ScheduleAnyway"), f"{at}.whenUnsatisfiable",
                "DoNotSchedule or ScheduleAnyway", action)
        if (key, action) in pairs:
            raise ConfigError(f"{at}: a second constraint for topologyKey {key} with {action}; expected one each")
        pairs.add((key, action))
        if spread.get("minDomains") is not None:
            domains = spread["minDomains"]
            _expect(type(domains) is int and domains > 0 and action == "DoNotSchedule", f"{at}.minDomains",
                    "a whole number above 0, with whenUnsatisfiable: DoNotSchedule", domains)
        for policy in ("nodeAffinityPolicy", "nodeTaintsPolicy"):
            if spread.get(policy) is not None:
                _expect(spread[policy] in ("Honor", "Ignore"), f"{at}.{policy}", "Honor or Ignore", spread[policy])
        selector = spread.get("labelSelector")
        _check_selector(selector, f"{at}.labelSelector")
        taken = _selector_keys(selector if selector is not None else naming.nodeset_selector(nodeset.name, ""))
        for j, label in enumerate(_as_list(spread.get("matchLabelKeys"), f"{at}.matchLabelKeys", "a list of label keys")):
            _expect(isinstance(label, str) and is_qualified_name(label) and label not in taken,
                    f"{at}.matchLabelKeys[{j}]", "a label key that the labelSelector does not name", label)


def _check_selector(selector: Any, at: str, operators: dict[str, str] = _SELECTOR_OPERATORS,
                    values_are_labels: bool = True) -> None:
    """A label selector (or a node selector term, with ``operators`` and ``matchExpressions``)."""
    selector = _as_map(selector, at, "a mapping (matchLabels, matchExpressions)")
    for key, value in _as_map(selector.get("matchLabels"), f"{at}.matchLabels", "a mapping of labels").items():
        _expect(is_qualified_name(str(key)), f"{at}.matchLabels", "label keys like 'example.com/name'", key)
        _check_label_value(value, f"{at}.matchLabels.{key}")
    for j, req in enumerate(_as_list(selector.get("matchExpressions"), f"{at}.matchExpressions", "a list")):
        where = f"{at}.matchExpressions[{j}]"
        req = _as_map(req, where, "a mapping with key, operator and values")
        operator = req.get("operator")
        values = _as_list(req.get("values"), f"{where}.values", "a list of values")
        _expect(isinstance(operator, str) and operator in operators, f"{where}.operator",
                f"one of {', '.join(operators)}", operator)
        wants = operators[operator]
        _expect({"some values": bool(values), "no values": not values, "one value": len(values) == 1}[wants],
                f"{where}.values", f"{wants} with operator {operator}", values)
        _expect(isinstance(req.get("key"), str) and is_qualified_name(req["key"]), f"{where}.key",
                "a label key like 'example.com/name'", req.get("key"))
        for value in values:
            if values_are_labels:
                _check_label_value(value, f"{where}.values")
            else:
                _string(value, f"{where}.values", "strings")


def _selector_keys(selector: Mapping[str, Any]) -> set[Any]:
    """The label keys a (checked) label selector names."""
    return set(selector.get("matchLabels") or {}) | {r.get("key") for r in selector.get("matchExpressions") or []}


def _check_label_value(value: Any, at: str) -> None:
    value = _string(value, at, "a label value")
    _expect(len(value) <= 63 and bool(_LABEL_VALUE.match(value)), at, "a label value (63 characters of "
            "[A-Za-z0-9-_.])", value)


def _check_affinity(affinity: dict[str, Any], at: str) -> None:
    node = _as_map(affinity.get("nodeAffinity"), f"{at}.nodeAffinity",
                   "a mapping (requiredDuringSchedulingIgnoredDuringExecution, ...)")
    required_at = f"{at}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    if node.get("requiredDuringSchedulingIgnoredDuringExecution") is not None:
        required = _as_map(node["requiredDuringSchedulingIgnoredDuringExecution"], required_at,
                           "a node selector (nodeSelectorTerms)")
        terms = _as_list(required.get("nodeSelectorTerms"), f"{required_at}.nodeSelectorTerms", "a list of terms")
        _expect(bool(terms), f"{required_at}.nodeSelectorTerms", "at least one node selector term", terms)
        for i, term in enumerate(terms):
            _check_node_term(term, f"{required_at}.nodeSelectorTerms[{i}]")
    _check_weighted(node, f"{at}.nodeAffinity", "preference", _check_node_term)
    for kind in ("podAffinity", "podAntiAffinity"):
        pods = _as_map(affinity.get(kind), f"{at}.{kind}", "a mapping (requiredDuringSchedulingIgnoredDuringExecution, ...)")
        terms_at = f"{at}.{kind}.requiredDuringSchedulingIgnoredDuringExecution"
        for i, term in enumerate(_as_list(pods.get("requiredDuringSchedulingIgnoredDuringExecution"), terms_at,
                                          "a list of pod affinity terms")):
            _check_pod_term(term, f"{terms_at}[{i}]")
        _check_weighted(pods, f"{at}.{kind}", "podAffinityTerm", _check_pod_term)


def _check_weighted(affinity: Mapping[str, Any], at: str, inner: str, check: Any) -> None:
    """The preferred terms: each a weight of 1-100 and the term it weighs."""
    terms_at = f"{at}.preferredDuringSchedulingIgnoredDuringExecution"
    for i, term in enumerate(_as_list(affinity.get("preferredDuringSchedulingIgnoredDuringExecution"), terms_at,
                                      "a list of weighted terms")):
        where = f"{terms_at}[{i}]"
        term = _as_map(term, where, f"a mapping (weight, {inner})")
        _expect(type(term.get("weight")) is int and 1 <= term["weight"] <= 100, f"{where}.weight", "1-100",
                term.get("weight"))
        check(term.get(inner), f"{where}.{inner}")


def _check_node_term(term: Any, at: str) -> None:
    term = _as_map(term, at, "a node selector term (matchExpressions, matchFields)")
    _check_selector({"matchExpressions": term.get("matchExpressions")}, at, _NODE_OPERATORS, values_are_labels=False)
    for j, req in enumerate(_as_list(term.get("matchFields"), f"{at}.matchFields", "a list")):
        where = f"{at}.matchFields[{j}]"
        req = _as_map(req, where, "a mapping with key, operator and values")
        _expect(req.get("key") == "metadata.name", f"{where}.key", "metadata.name (the only node field)", req.get("key"))
        values = _as_list(req.get("values"), f"{where}.values", "a list with one node name")
        _expect(req.get("operator") in ("In", "NotIn") and len(values) == 1, where,
                "operator In or NotIn with one node name", {k: req.get(k) for k in ("operator", "values")})
        _expect(isinstance(values[0], str) and _is_subdomain(values[0]), f"{where}.values",
                "a node name (DNS-1123 subdomain)", values[0])


def _check_pod_term(term: Any, at: str) -> None:
    term = _as_map(term, at, "a pod affinity term (labelSelector, topologyKey)")
    key = term.get("topologyKey")
    _expect(isinstance(key, str) and key != "" and is_qualified_name(key), f"{at}.topologyKey",
            "a node label key like 'kubernetes.io/hostname'", key)
    _check_selector(term.get("labelSelector"), f"{at}.labelSelector")
    _check_selector(term.get("namespaceSelector"), f"{at}.namespaceSelector")
    for namespace in _as_list(term.get("namespaces"), f"{at}.namespaces", "a list of namespaces"):
        _expect(isinstance(namespace, str) and _is_label(namespace), f"{at}.namespaces", "namespace names "
                "(DNS-1123 labels)", namespace)
    # matchLabelKeys / mismatchLabelKeys (beta, on by default in 1.31): the server adds `key In`
    # / `key NotIn` the pod's own value of each key to the labelSelector, so a key the selector
    # already names is refused there once the pod carries it; here always (it does nothing else).
    selector = term.get("labelSelector")
    keys: dict[str, list[str]] = {}
    for field in ("matchLabelKeys", "mismatchLabelKeys"):
        keys[field] = _as_list(term.get(field), f"{at}.{field}", "a list of label keys")
        for j, label in enumerate(keys[field]):
            label = _string(label, f"{at}.{field}[{j}]", "a label key")
            _expect(is_qualified_name(label), f"{at}.{field}[{j}]", "a label key like 'example.com/name'", label)
        if keys[field] and selector is None:
            raise ConfigError(f"{at}.{field}: needs a labelSelector (Kubernetes refuses label keys without one)")
    taken = _selector_keys(selector or {})  # a mapping: _check_selector said so
    for j, label in enumerate(keys["matchLabelKeys"]):
        _expect(label not in taken and label not in keys["matchLabelKeys"][:j], f"{at}.matchLabelKeys[{j}]",
                "a label key that the labelSelector and the list do not name already", label)
        _expect(label not in keys["mismatchLabelKeys"], f"{at}.matchLabelKeys[{j}]",
                "a label key that is not also in mismatchLabelKeys", label)


def _check_gang(gang: Gang, where: str) -> None:
    if gang.kind == "kueue" and not gang.queue:
        raise ConfigError(f"{where}.queue: expected the Kueue LocalQueue name (kueue needs one)")
    # A queue is an object's name (Volcano Queue, Kueue LocalQueue); Kueue's also goes into a
    # label value, hence 63 characters. The API would refuse the pod only after Slurm chose it.
    longest = 63 if gang.kind == "kueue" else 253
    _expect(gang.queue is None or (len(gang.queue) <= longest and _is_subdomain(gang.queue)),
            f"{where}.queue", f"a queue name (DNS-1123 subdomain, at most {longest} characters)", gang.queue)
    _expect(_is_subdomain(gang.scheduler_name), f"{where}.scheduler_name", "a DNS-1123 subdomain", gang.scheduler_name)


def _check_gpus(gpus: GpuSettings, where: str) -> None:
    if gpus.vendor == "amd" and gpus.sharing != "none":
        raise ConfigError(f"{where}.sharing: expected 'none' for AMD GPUs (MIG and time-slicing are NVIDIA's), "
                          f"got {gpus.sharing!r}")
    if gpus.resource is not None:
        _expect(is_extended_resource(gpus.resource), f"{where}.resource",
                "an extended resource name like 'nvidia.com/gpu'", gpus.resource)


def _check_networks(networks: list[NetworkAttachment], where: str) -> None:
    interfaces: set[str] = set()
    for i, network in enumerate(networks):
        here = f"{where}[{i}]"
        _expect(_is_subdomain(network.name), f"{here}.name", "a NetworkAttachmentDefinition name", network.name)
        _expect(_is_label(network.namespace), f"{here}.namespace", "a DNS-1123 label", network.namespace)
        _expect(is_extended_resource(network.resource), f"{here}.resource",
                "the device resource of the NetworkAttachmentDefinition, like 'nvidia.com/rdma_ib0'",
                network.resource)
        if network.interface is not None:
            _expect(bool(_INTERFACE.match(network.interface)) and network.interface not in ("eth0", "lo"),
                    f"{here}.interface", "an interface name of 1-15 characters other than eth0 and lo",
                    network.interface)
            if network.interface in interfaces:
                raise ConfigError(f"{here}.interface: {network.interface!r} is used by an earlier attachment")
            interfaces.add(network.interface)


def _check_capacity(capacity: Capacity, node_selector: dict[str, str], where: str) -> None:
    _expect(is_qualified_name(capacity.label), f"{where}.label", "a label key", capacity.label)
    value = capacity.value or capacity.type
    _expect(len(value) <= 63 and bool(_LABEL_VALUE.match(value)), f"{where}.value", "a label value", value)
    if capacity.taint is not None:
        _expect(is_qualified_name(capacity.taint), f"{where}.taint", "a taint key", capacity.taint)
    if node_selector.get(capacity.label, value) != value:
        raise ConfigError(f"{where}: node_selector sets {capacity.label}={node_selector[capacity.label]!r}, "
                          f"expected {value!r} for {capacity.type} capacity")


def _check_env_and_args(nodeset: Nodeset, where: str) -> None:
    for key in nodeset.env:
        # What every supported API server accepts: 1.27-1.31 want these (IsEnvVarName); the
        # relaxed rule (any printable ASCII but '=') is on by default only from 1.32.
        _expect(bool(_ENV_NAME.fullmatch(key)) and key != "." and not key.startswith(".."), f"{where}.env",
                "variable names of letters, digits, '_', '-' and '.', not starting with a digit or '..', not '.' "
                "(what Kubernetes 1.27-1.31 accept)", key)
        if key in OWNED_ENV:
            raise ConfigError(f"{where}.env.{key}: set by the pod template, expected another name")
        if key in GPU_VISIBILITY_ENV:
            raise ConfigError(f"{where}.env.{key}: would show the pod other GPUs than Kubernetes allocated "
                              f"and Slurm counts; expected the device plugin to set it")
    for arg in nodeset.slurmd_args:
        name = arg.split("=", 1)[0]
        if _names_the_node(arg) or (name.startswith("--conf-") and "--conf-server".startswith(name)):
            raise ConfigError(f"{where}.slurmd_args: {arg!r} is set by the pod template")


def _names_the_node(arg: str) -> bool:
    """Whether slurmd's getopt (options "bcCd:Df:hL:Mn:N:vV") reads ``arg`` as -N: alone, with
    its value attached (-Nx), or after flags in one group (-vNx); not inside another option's
    value (-dN is -d with "N")."""
    if not arg.startswith("-") or arg.startswith("--"):
        return False
    for char in arg[1:]:
        if char == "N":
            return True
        if char in "dfLn":  # takes the rest of the group as its value
            return False
    return False


def _expect(ok: bool, where: str, expected: str, got: object) -> None:
    if not ok:
        raise ConfigError(f"{where}: expected {expected}, got {got!r}")


def _is_label(value: str | None) -> bool:
    return value is None or (len(value) <= 63 and bool(_DNS_LABEL.match(value)))


def _is_subdomain(value: str | None) -> bool:
    return value is None or (len(value) <= 253 and bool(_DNS_SUBDOMAIN.match(value)))


def is_qualified_name(key: str) -> bool:
    """A label/annotation key or resource name: ``[prefix/]name`` as Kubernetes validates it."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (prefix and _is_subdomain(prefix)):
        return False
    return len(name) <= 63 and bool(_NAME_PART.match(name))


def is_extended_resource(name: str) -> bool:
    """A device plugin's resource: ``vendor-domain/name``, outside ``kubernetes.io``."""
    prefix, _, _ = name.rpartition("/")
    return bool(prefix) and is_qualified_name(name) and not prefix.endswith("kubernetes.io")
