"""The bridge's config file: typed, validated once at load.

One YAML file (default ``/etc/slurm/k8s-bridge.yaml``) says how to reach Kubernetes, where the
slurmd pods find slurmctld, where to log, and which Slurm nodes map to which pod template
(*nodesets*). Every error names the file, the field path and what was expected, in one line.

The schema is a set of :class:`msgspec.Struct` types: msgspec is already loaded by lightkube,
costs ~1 ms, and reports the exact field path of a bad value.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import msgspec

from bridge.errors import ConfigError, UsageError
from bridge import hostlist

DEFAULT_PATH = "/etc/slurm/k8s-bridge.yaml"
ENV_VAR = "SLURM_K8S_BRIDGE_CONFIG"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


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
    qps: float = 20.0
    """Client-side rate limit, requests per second (client-go's default is 5)."""
    burst: int = 50
    """Requests allowed at once above ``qps`` before the limiter waits."""
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
    """Where scontrol and sinfo are: the hooks run with no PATH."""
    prolog_timeout: float = 300.0
    """Seconds slurm-k8s-prolog waits for a job's nodes to register before letting it go."""


class LogSettings(_Strict):
    file: str | None = "/var/log/slurm/k8s-bridge.log"
    """JSON-lines log file; None logs to stderr only."""
    level: Literal["debug", "info", "warning", "error"] = "info"


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
    munge_secret: str = "munge-key"
    """Secret holding ``munge.key``, mounted into every pod."""
    memory_overhead_mb: int = 0
    """Added to the node's RealMemory for the pod's memory (munged, slurmd itself)."""
    host_network: bool = False
    """Run the pod on the host's network (dnsPolicy ClusterFirstWithHostNet)."""
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    """Extra pod labels (the bridge's own labels cannot be overridden)."""
    annotations: dict[str, str] = {}
    service_account: str | None = None
    priority_class: str | None = None
    termination_grace_period: int = 30
    slurmd_args: list[str] = []
    """Extra arguments for slurmd after the ones the template sets."""
    env: dict[str, str] = {}
    """Extra environment variables for the slurmd container."""
    values: dict[str, Any] = {}
    """Free-form values for a site's own templates (``nodeset.values`` in Jinja)."""


class Config(_Strict):
    slurm: SlurmSettings
    nodesets: list[Nodeset]
    kubernetes: KubernetesSettings = KubernetesSettings()
    log: LogSettings = LogSettings()
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

    def template_path(self, nodeset: Nodeset) -> Path:
        return Path(self.templates_dir or default_templates_dir()) / nodeset.template


def default_templates_dir() -> str:
    """The shipped templates: installed under ``<prefix>/share``, or the source checkout's."""
    installed = Path(sys.prefix) / "share" / "slurm-k8s-bridge" / "pod-templates"
    if installed.is_dir():
        return str(installed)
    return str(Path(__file__).resolve().parent.parent / "pod-templates")


def resolve_path(explicit: str | None) -> str:
    """Which config file to read: ``--config``, then ``$SLURM_K8S_BRIDGE_CONFIG``, then
    ``k8s-bridge.yaml`` beside ``$SLURM_CONF`` (the only variable Slurm gives its hooks),
    then :data:`DEFAULT_PATH`."""
    if explicit:
        return explicit
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    if os.environ.get("SLURM_CONF"):
        return str(Path(os.environ["SLURM_CONF"]).parent / "k8s-bridge.yaml")
    return DEFAULT_PATH


def load(path: str | None = None) -> Config:
    """Read and validate the config file.

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or a value is invalid;
            the message names the file, the field and what was expected.
    """
    path = resolve_path(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (set --config or ${ENV_VAR})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return parse(text, path=path)


def parse(text: str, *, path: str = "<config>") -> Config:
    """Validate config text (see :func:`load`)."""
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
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
    return f"{where}: {text}" if where else text


def _check(config: Config) -> None:
    """The rules a type cannot say."""
    path = config.path
    if not _DNS_LABEL.match(config.kubernetes.namespace):
        raise ConfigError(f"{path}: kubernetes.namespace: expected a DNS-1123 label, got {config.kubernetes.namespace!r}")
    if config.kubernetes.qps <= 0 or config.kubernetes.burst < 1:
        raise ConfigError(f"{path}: kubernetes.qps/burst: expected positive numbers")
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
            hostlist.expand(nodeset.nodes)
        except UsageError as e:
            raise ConfigError(f"{where}.nodes: {e}") from None
        if not config.template_path(nodeset).is_file():
            raise ConfigError(f"{where}.template: no template {str(config.template_path(nodeset))!r}")
