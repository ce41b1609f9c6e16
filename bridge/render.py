"""Render a Slurm node's pod: Jinja2 template → YAML → checked manifest.

Every value a template writes goes through ``tojson``: JSON is YAML, so a node feature such as
``a: b``, a newline or ``{{ x }}`` stays a string and cannot change the manifest's structure.
``StrictUndefined`` turns a misspelt variable into an error instead of an empty string.
Errors name the template, the line and the node.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from bridge import NAME, naming
from bridge.config import Config, Nodeset
from bridge.errors import TemplateError
from bridge.placement import dns_config, placement
from bridge.resources import MULTUS_ANNOTATION, gpu_grant, network_annotation, pod_resources
from bridge.slurm import NodeFacts

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class PodPlan:
    """What resume will create for one Slurm node."""

    node: str
    nodeset: str
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]


def render_pod(config: Config, facts: NodeFacts, *, job_id: int | None = None) -> PodPlan:
    """The pod manifest for one node.

    Raises:
        ConfigError: no nodeset matches the node.
        TemplateError: the template does not render, parse or describe one valid Pod.
    """
    nodeset = config.nodeset_for(facts.name)
    path = config.template_path(nodeset)
    context = _context(config, nodeset, facts, job_id)
    text = _render(path, context, facts.name)
    try:
        manifest = _parse(text, path, facts.name)
    except _Unparsable as e:
        from bridge import validate  # only on this error path: finds the template's own line

        raise TemplateError(validate._yaml_problem(config, facts, job_id) or str(e)) from None
    _check(manifest, context["pod"], path, facts.name)
    return PodPlan(node=facts.name, nodeset=nodeset.name, manifest=manifest)


def _context(config: Config, nodeset: Nodeset, facts: NodeFacts, job_id: int | None) -> dict[str, Any]:
    """The template's variables. Everything a template needs is computed here, so a site's own
    template stays a description of the pod, not a program."""
    cluster = config.slurm.cluster_name
    where = f"{config.path}: nodesets[{config.nodesets.index(nodeset)}]"
    labels = {
        **nodeset.labels,
        "app.kubernetes.io/name": "slurmd",
        naming.NODE_LABEL: naming.dns_label(facts.name),
        naming.NODESET_LABEL: nodeset.name,
        **naming.owner_labels(cluster),
    }
    if job_id is not None:
        labels[naming.JOB_LABEL] = str(job_id)
    annotations = {**nodeset.annotations, naming.NODE_ANNOTATION: facts.name}
    if nodeset.networks:
        annotations[MULTUS_ANNOTATION] = network_annotation(nodeset.networks)
    grant = gpu_grant(facts, nodeset.gpus, where=f"{where}.gpus")
    return {
        "node": {
            "name": facts.name,
            "cpus": facts.cpus,
            "memory_mb": facts.real_memory_mb,
            "gres": list(facts.gres),
            "features": list(facts.features),
        },
        "nodeset": nodeset,
        "pod": {
            "name": naming.pod_name(cluster, facts.name),
            "namespace": config.kubernetes.namespace,
            "hostname": naming.hostname(facts.name),
            "subdomain": nodeset.subdomain,
            "dns_config": dns_config(nodeset, namespace=config.kubernetes.namespace),
            "labels": labels,
            "annotations": annotations,
            "image_pull_secrets": [{"name": secret} for secret in nodeset.image_pull_secrets],
        },
        "placement": placement(nodeset, cluster=cluster),
        "container": {
            "env": {"SLURM_NODENAME": facts.name, **(grant.env() if grant else {}), **nodeset.env},
            "capabilities": ["IPC_LOCK"] if any(n.rdma for n in nodeset.networks) else [],
            # slurmd's cgroup plugins: a writable cgroupfs, which on cgroup v1 only privileged gives.
            "privileged": nodeset.cgroups,
        },
        "gpus": {"resource": grant.resource, "count": grant.count, "gres": grant.gres} if grant else None,
        "slurm": {"conf_server": config.slurm.conf_server, "cluster_name": cluster},
        "job": {"id": job_id} if job_id is not None else None,
        "resources": pod_resources(facts, nodeset, where=where),
        "bridge": {"name": NAME},
    }


def _tojson(value: Any) -> str:
    # Struct fields and tuples arrive here too; default=list covers tuples from msgspec.
    return json.dumps(value, default=_plain)


def _plain(value: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(value)


@lru_cache(maxsize=8)
def _environment(directory: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["tojson"] = _tojson
    return env


def _render(path: Path, context: dict[str, Any], node: str) -> str:
    try:
        template = _environment(str(path.parent)).get_template(path.name)
        return template.render(context)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{path}:{e.lineno}: node {node}: {e.message}") from None
    except jinja2.TemplateNotFound:
        raise TemplateError(f"{path}: template not found (node {node})") from None
    except Exception as e:  # noqa: BLE001 - a site's template is data: whatever it raises (1/0, a bad
        # index, Jinja's own runtime errors) is its error, named by line and node, never a crash of the hook
        message = str(e) if isinstance(e, jinja2.TemplateError) else f"{type(e).__name__}: {e}"
        raise TemplateError(f"{path}:{_template_line(e, path)}: node {node}: {' '.join(message.split())}") from e


def _template_line(error: Exception, path: Path) -> str:
    """The template line an error came from: Jinja puts template frames in the traceback."""
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if f.filename == str(path)]
    return str(lines[-1]) if lines else "?"


class _Unparsable(TemplateError):
    """The rendered text is not YAML (its line is the output's, not yet the template's)."""


def _parse(text: str, path: Path, node: str) -> dict[str, Any]:
    try:
        documents = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else "?"
        raise _Unparsable(f"{path}: node {node}: rendered YAML does not parse at output line {line}: "
                          f"{getattr(e, 'problem', e)}") from None
    pods = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Pod"]
    if len(documents) != 1 or len(pods) != 1:
        raise TemplateError(f"{path}: node {node}: expected exactly one Pod document, "
                            f"got {len(documents)} document(s), {len(pods)} Pod(s)")
    return pods[0]


def _check(manifest: dict[str, Any], pod: dict[str, Any], path: Path, node: str) -> None:
    """What the bridge relies on: its name, namespace and ownership labels are intact."""
    shapes = {"metadata": manifest.get("metadata"), "spec": manifest.get("spec")}
    shapes.update({f"metadata.{k}": shapes["metadata"].get(k) for k in ("labels", "annotations")}
                  if isinstance(shapes["metadata"], dict) else {})
    if wrong := [f"{where} must be a mapping" for where, value in shapes.items()
                 if value is not None and not isinstance(value, dict)]:
        raise TemplateError(f"{path}: node {node}: " + "; ".join(wrong))
    meta = manifest.get("metadata") or {}
    problems = []
    if meta.get("name") != pod["name"]:
        problems.append(f"metadata.name must be {pod['name']!r} (use pod.name)")
    if meta.get("namespace", pod["namespace"]) != pod["namespace"]:
        problems.append(f"metadata.namespace must be {pod['namespace']!r}")
    labels = meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in pod["labels"].items()):
        problems.append("metadata.labels must include pod.labels")
    if (meta.get("annotations") or {}).get(naming.NODE_ANNOTATION) != node:
        problems.append("metadata.annotations must include pod.annotations")
    if not (manifest.get("spec") or {}).get("containers"):
        problems.append("spec.containers: at least one container is required")
    if problems:
        raise TemplateError(f"{path}: node {node}: " + "; ".join(problems))
