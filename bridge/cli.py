"""``slurm-k8s-bridge``: the admin's command line.

``render`` shows the pods resume would create (creating nothing); ``resume``/``suspend`` run the
hooks' flows by hand; ``pods`` lists the bridge's pods. Errors are one line and an exit code
(:mod:`bridge.errors`), as in the hooks.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from bridge.errors import BridgeError


class _Obj:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Any = None

    @property
    def config(self) -> Any:
        from bridge import config as config_module

        if self._config is None:
            self._config = config_module.load(self.config_path)
        return self._config

    def log(self, command: str) -> Any:
        from bridge import log as log_module

        return log_module.configure(self.config.log, hook=f"cli-{command}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", envvar="SLURM_K8S_BRIDGE_CONFIG",
              help="Bridge config file [default: k8s-bridge.yaml beside $SLURM_CONF, else /etc/slurm/k8s-bridge.yaml].")
@click.version_option(package_name="slurm-k8s-bridge")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Run Slurm CLOUD nodes as slurmd pods in Kubernetes."""
    ctx.obj = _Obj(config_path)


@cli.command()
@click.argument("nodes", nargs=-1, required=True)
@click.option("--job-id", type=int, help="Label the pods with this job, as resume would.")
@click.option("--check", is_flag=True,
              help="Validate the pods against Kubernetes' own schema instead of printing them.")
@click.option("--kubernetes-version", "kubernetes_versions", multiple=True, metavar="X.Y",
              help="With --check: the Kubernetes version(s) to check against "
                   "[default: the oldest and newest supported, 1.27 and 1.37].")
@click.pass_obj
def render(obj: _Obj, nodes: tuple[str, ...], job_id: int | None, check: bool,
           kubernetes_versions: tuple[str, ...]) -> None:
    """Print the pods resume would create for NODES (hostlists), creating nothing."""
    import yaml

    from bridge.errors import UsageError
    from bridge.render import render_pod
    from bridge.slurm import CommandSlurm

    if kubernetes_versions and not check:
        raise UsageError("--kubernetes-version goes with --check")
    names = _expand(nodes)
    facts = CommandSlurm(obj.config.slurm.bin_dir).node_facts(names)
    missing = [n for n in names if n not in facts]
    if missing:
        raise BridgeError(f"Slurm does not know node(s) {', '.join(missing)}")
    if check:
        _check_pods(obj.config, [facts[n] for n in names], job_id=job_id, versions=kubernetes_versions)
        return
    manifests = [render_pod(obj.config, facts[n], job_id=job_id).manifest for n in names]
    click.echo(yaml.safe_dump_all(manifests, sort_keys=False), nl=False)


def _check_pods(config: Any, facts: list[Any], *, job_id: int | None, versions: tuple[str, ...]) -> None:
    """One line per node: valid (with its QoS class), or each problem on stderr."""
    from bridge import validate
    from bridge.errors import TemplateError
    from bridge.render import render_pod

    wanted = tuple(dict.fromkeys(validate.version(v) for v in versions)) or validate.SUPPORTED
    failed = 0
    for node in facts:
        try:
            problems = [("template", p) for p in validate.check_pod(config, node, versions=wanted, job_id=job_id)]
        except BridgeError as e:
            problems = [(e.kind, str(e))]
        if problems:
            failed += 1
            for kind, problem in problems:
                click.echo(f"slurm-k8s-bridge: {kind}: {problem}", err=True)
            continue
        pod = render_pod(config, node, job_id=job_id).manifest
        click.echo(f"{node.name}: pod {pod['metadata']['name']} valid for Kubernetes {', '.join(wanted)} "
                   f"(QoS {validate.qos_class(pod)})")
    if failed:
        raise TemplateError(f"{failed} of {len(facts)} pod(s) not valid (see above)")
    unserved, unknown = validate.gang_api_problems(config, [node.name for node in facts])
    for line in unknown:
        click.echo(f"slurm-k8s-bridge: warning: {line}", err=True)
    if unserved:
        from bridge.errors import KubernetesError

        raise KubernetesError("; ".join(unserved))


@cli.command()
@click.argument("nodes", nargs=-1, required=True)
@click.pass_obj
def resume(obj: _Obj, nodes: tuple[str, ...]) -> None:
    """Create the pods of NODES now, as ResumeProgram would."""
    from bridge import resume as flow
    from bridge.kube import LightkubeApi
    from bridge.slurm import CommandSlurm

    with LightkubeApi(obj.config.kubernetes) as kube:
        outcome = flow.resume(_expand(nodes), config=obj.config, slurm=CommandSlurm(obj.config.slurm.bin_dir),
                              kube=kube, log=obj.log("resume"))
    click.echo(f"created {len(outcome.created)}, already there {len(outcome.existing)}, failed {len(outcome.failed)}")
    for node, cause in outcome.failed.items():
        click.echo(f"  {node}: {cause}")
    if outcome.failed:
        sys.exit(75)


@cli.command()
@click.argument("nodes", nargs=-1, required=True)
@click.pass_obj
def suspend(obj: _Obj, nodes: tuple[str, ...]) -> None:
    """Delete the pods of NODES now, as SuspendProgram would."""
    from bridge import suspend as flow
    from bridge.kube import LightkubeApi

    with LightkubeApi(obj.config.kubernetes) as kube:
        outcome = flow.suspend(_expand(nodes), config=obj.config, kube=kube, log=obj.log("suspend"))
    click.echo(f"deleted {len(outcome.deleted)}, had no pod {len(outcome.absent)}, failed {len(outcome.failed)}")
    if outcome.failed:
        sys.exit(75)


@cli.command()
@click.pass_obj
def pods(obj: _Obj) -> None:
    """List the bridge's pods: Slurm node, pod, phase, Kubernetes node."""
    from bridge import naming
    from bridge.kube import LightkubeApi

    with LightkubeApi(obj.config.kubernetes) as kube:
        found = kube.list_pods(naming.owner_labels(obj.config.slurm.cluster_name))
    for pod in sorted(found, key=lambda p: naming.node_of(p) or ""):
        status, spec = pod.get("status") or {}, pod.get("spec") or {}
        phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else status.get("phase", "?")
        click.echo(f"{naming.node_of(pod)}\t{pod['metadata']['name']}\t{phase}\t{spec.get('nodeName') or '-'}")


def _expand(expressions: tuple[str, ...]) -> list[str]:
    from bridge import hostlist

    return [node for expression in expressions for node in hostlist.expand(expression)]


def main() -> None:
    """Entry point: run the CLI; an expected error is one line and its exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except BridgeError as e:
        click.echo(f"slurm-k8s-bridge: {e.kind}: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
