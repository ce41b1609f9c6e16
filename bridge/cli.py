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
@click.option("--job-id", type=click.IntRange(min=1, max=2**32 - 1),  # Slurm's job ids are uint32
              help="Label the pods with this job, as resume would.")
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
    if check:
        from bridge import validate

        validate.require_schemas()  # before Slurm is asked anything, as the versions and the hostlist
        kubernetes_versions = tuple(validate.version(v) for v in kubernetes_versions)
    names = _expand(nodes)
    obj.log("render")  # warnings go to the log, never into the YAML
    slurm = CommandSlurm(obj.config.slurm.bin_dir)
    facts = slurm.node_facts(names)
    missing = [n if len(n) <= 60 else f"{n[:40]}... ({len(n)} characters)" for n in names if n not in facts]
    if missing:
        from bridge.errors import UnknownNode

        raise UnknownNode(f"Slurm does not know node(s) {', '.join(missing[:5])}"
                          + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if check:
        _check_pods(obj.config, [facts[n] for n in names], job_id=job_id, versions=kubernetes_versions,
                    controller=str(v) if (v := slurm.learn_version()) else None)
        return
    manifests = [render_pod(obj.config, facts[n], job_id=job_id).manifest for n in names]
    click.echo(yaml.safe_dump_all(manifests, sort_keys=False), nl=False)


def _check_pods(config: Any, facts: list[Any], *, job_id: int | None, versions: tuple[str, ...],
                controller: str | None = None) -> None:
    """One line per node: valid (with its QoS class), or each problem on stderr; a nodeset image
    whose slurmd the running slurmctld (``controller``, e.g. "24.11.5") cannot accept is one."""
    from bridge import validate
    from bridge.errors import TemplateError
    from bridge.render import render_pod
    from bridge.skew import image_skew

    wanted = tuple(dict.fromkeys(validate.version(v) for v in versions)) or validate.SUPPORTED
    failed = 0
    for node in facts:
        try:
            problems = [("template", p) for p in validate.check_pod(config, node, versions=wanted, job_id=job_id)]
        except BridgeError as e:
            problems = [(e.kind, str(e))]
        skew = image_skew(controller, config.nodeset_for(node.name).image) if controller else None
        if skew:
            problems.append(("version", f"{node.name}: {skew}"))
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
@click.pass_obj
def check(obj: _Obj) -> None:
    """Preflight on the slurmctld host: one OK/WARN/FAIL line per finding; exit 78 on a FAIL."""
    from bridge import check as preflight

    sys.exit(preflight.main(obj.config_path, click.echo))


@cli.command("slurm-lua")
@click.argument("kind", type=click.Choice(["job_submit", "cli_filter"]))
@click.option("-o", "--output", metavar="PATH",
              help="Write the script here (e.g. /etc/slurm/job_submit.lua), replaced in one step and only "
                   "when it changed; default: stdout.")
@click.pass_obj
def slurm_lua(obj: _Obj, kind: str, output: str | None) -> None:
    """Print Slurm's job_submit.lua or cli_filter.lua that refuses jobs whose files are not on
    a filesystem the elastic nodes mount (docs/hpc-nodes.md, "Output never lost")."""
    from bridge import slurmlua

    text = slurmlua.render(obj.config, kind)
    if output is None:
        click.echo(text, nl=False)
        return
    written = slurmlua.install(text, output)
    click.echo(f"{output}: {'written' if written else 'unchanged'}", err=True)


@cli.command()
@click.argument("nodes", nargs=-1, required=True)
@click.pass_obj
def resume(obj: _Obj, nodes: tuple[str, ...]) -> None:
    """Create the pods of NODES now, as ResumeProgram would."""
    from bridge import resume as flow
    from bridge.kube import LightkubeApi
    from bridge.slurm import CommandSlurm

    names = _expand(nodes)  # a malformed hostlist is a usage error before any connection
    with LightkubeApi(obj.config.kubernetes) as kube:
        outcome = flow.resume(names, config=obj.config, slurm=CommandSlurm(obj.config.slurm.bin_dir),
                              kube=kube, log=obj.log("resume"))
    click.echo(f"created {len(outcome.created)}, already there {len(outcome.existing)}, failed {len(outcome.failed)}")
    for node, cause in outcome.failed.items():
        click.echo(f"  {node}: {cause}")
    if outcome.failed:
        sys.exit(75)


@cli.command()
@click.argument("nodes", nargs=-1, required=True)
@click.option("--force", is_flag=True,
              help="Also delete the pods of nodes Slurm has up or powering up (their jobs are killed).")
@click.pass_obj
def suspend(obj: _Obj, nodes: tuple[str, ...], force: bool) -> None:
    """Delete the pods of NODES now, as SuspendProgram would. A node Slurm has up or powering up
    keeps its pod (exit 75) unless --force: power it down through Slurm instead."""
    from bridge import hostlist
    from bridge import suspend as flow
    from bridge.kube import LightkubeApi
    from bridge.slurm import CommandSlurm

    names = _expand(nodes)
    slurm = None if force else CommandSlurm(obj.config.slurm.bin_dir)
    with LightkubeApi(obj.config.kubernetes) as kube:
        outcome = flow.suspend(names, config=obj.config, kube=kube, log=obj.log("suspend"), slurm=slurm, strict=True)
    click.echo(f"deleted {len(outcome.deleted)}, had no pod {len(outcome.absent)}, failed {len(outcome.failed)}"
               + (f", kept {len(outcome.kept)}" if outcome.kept else ""))
    for node, cause in outcome.failed.items():
        click.echo(f"  {node}: {cause}")
    if outcome.kept:
        click.echo(f"  kept {hostlist.fold(outcome.kept)}: Slurm has them up or powering up "
                   f"(scontrol power down them, or --force to delete their pods and kill their jobs)")
    if outcome.failed or outcome.kept:
        sys.exit(75)


@cli.command()
@click.pass_obj
def pods(obj: _Obj) -> None:
    """List the bridge's pods: Slurm node, pod, phase, Kubernetes node."""
    from bridge import naming
    from bridge.kube import LightkubeApi

    obj.log("pods")  # the client's retry warnings go to the log, never into the listing
    with LightkubeApi(obj.config.kubernetes) as kube:
        found = kube.list_pods(naming.owner_labels(obj.config.slurm.cluster_name))
    for pod in sorted(found, key=lambda p: naming.node_of(p) or ""):
        status, spec = pod.get("status") or {}, pod.get("spec") or {}
        phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else status.get("phase", "?")
        click.echo(f"{naming.node_of(pod)}\t{pod['metadata']['name']}\t{phase}\t{spec.get('nodeName') or '-'}")


# ---- the daemon and what it sees (bridge/daemon.py, bridge/status.py) ------------------------


@cli.command()
@click.option("--dry-run", is_flag=True, help="Log what would be done; change nothing.")
@click.option("--once", is_flag=True, help="One look, print its actions, exit (with --dry-run: a reconcile preview).")
@click.pass_obj
def daemon(obj: _Obj, dry_run: bool, once: bool) -> None:
    """Reconcile Slurm and Kubernetes until stopped (run by systemd or as a Deployment)."""
    try:
        from bridge import daemon as flow
    except ModuleNotFoundError as e:  # the hooks do without it; the daemon cannot
        from bridge.errors import NotInstalled

        raise NotInstalled(f"the daemon needs {e.name}: pip install 'slurm-k8s-bridge[daemon]'") from None

    actions = flow.main(obj.config, dry_run=dry_run, once=once)
    for action in actions if once else ():
        click.echo(f"{'would ' if dry_run else ''}{action.kind.replace('_', ' ')}\t{action.node or '-'}\t{action.cause}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per node (per pool with --pools).")
@click.option("--all", "everything", is_flag=True, help="Also the nodes that are powered down with no pod.")
@click.option("--pools", is_flag=True, help="The warm pools instead: target, idle, starting, cap, next power-ups.")
@click.pass_obj
def status(obj: _Obj, as_json: bool, everything: bool, pools: bool) -> None:
    """Slurm's elastic nodes beside the bridge's pods; ! marks where they disagree."""
    import time

    from bridge import status as view

    obj.log("status")  # the clients' retry warnings go to the log, never into the table or the JSON
    if pools:
        try:
            import prometheus_client  # noqa: F401  (the pool's step counts in the daemon's metrics)
        except ModuleNotFoundError as e:
            from bridge.errors import NotInstalled

            raise NotInstalled(f"status --pools needs {e.name}: pip install 'slurm-k8s-bridge[daemon]'") from None
        from bridge.slurm import CommandSlurm

        slurm, nodes = CommandSlurm(obj.config.slurm.bin_dir), view.pool_nodes(obj.config)
        found_pools = view.pool_rows(slurm.node_facts(nodes) if nodes else {}, now=time.time(), config=obj.config,
                                     slurm=slurm)
        click.echo(view.pools_as_json(found_pools) if as_json else view.pool_table(found_pools))
        return
    facts, pods, hosts = view.read(obj.config)
    found = view.rows(facts, pods, hosts, now=time.time(), config=obj.config, everything=everything)
    click.echo(view.as_json(found) if as_json else view.table(found))


def _expand(expressions: tuple[str, ...]) -> list[str]:
    from bridge import hostlist

    return [node for expression in expressions for node in hostlist.expand(expression)]


def main() -> None:
    """Entry point: run the CLI; an expected error is one line and its exit code (a usage
    error 64, as the hooks', not click's 2 with the whole usage around it)."""
    from bridge.hooks import ensure_stdio

    ensure_stdio()  # a closed stdout is /dev/null, as for the hooks
    try:
        cli.main(standalone_mode=False)
        sys.stdout.flush()  # what is left to write, while an error can still be one line
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"slurm-k8s-bridge: usage: {_usage_message(e)}", err=True)
        sys.exit(64)
    except BridgeError as e:
        click.echo(f"slurm-k8s-bridge: {e.kind}: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except OSError as e:
        from bridge.hooks import output_failed

        if (code := output_failed("slurm-k8s-bridge", e)) is None:
            raise
        sys.exit(code)


def _usage_message(error: click.ClickException) -> str:
    if type(error).__name__ == "NoArgsIsHelpError":  # click >= 8.2: its message is the whole help
        return f"expected a command ({', '.join(cli.commands)}); see 'slurm-k8s-bridge --help'"
    message = " ".join(error.format_message().split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    ctx = getattr(error, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message
