"""Check rendered pods as the Kubernetes API server would, before any hook sends one.

Rendering already guarantees one parseable Pod that keeps the bridge's name and labels
(:mod:`bridge.render`); this adds Kubernetes' own OpenAPI schema (kubernetes-validate, strict:
an unknown or misspelt field is an error), quantities, and the rules the pods rely on: device
requests equal limits, and a ``cpu_pinning`` nodeset's pod is Guaranteed with whole CPUs.
Each problem names the template, the template line, the node, the field and the Kubernetes
version, in one line.

Only ``slurm-k8s-bridge render --check`` and the tests import this: the schema library costs
far more than a hook may spend.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from bridge.config import Config
from bridge.errors import ConfigError, NotInstalled, TemplateError, UsageError
from bridge.slurm import NodeFacts

OLDEST = "1.27"
"""Oldest Kubernetes the pods are checked against: the static CPU manager (GA 1.26) and the
topology manager (GA 1.27) the HPC nodesets rely on are GA from here."""
NEWEST = "1.37"
"""Newest Kubernetes whose schema the installed kubernetes-validate carries."""
SUPPORTED = (OLDEST, NEWEST)

_QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {"": 1, "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "k": 10**3,
           "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20,
           "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def require_schemas() -> None:
    """Raises NotInstalled, saying what to install, when Kubernetes' schemas are missing: they
    come with the ``[check]`` extra, which a hook never needs."""
    from importlib.util import find_spec

    if find_spec("kubernetes_validate") is None:
        raise NotInstalled("checking pods needs Kubernetes' schemas: pip install 'slurm-k8s-bridge[check]'")


def version(text: str) -> str:
    """``1.30``, ``v1.30`` or ``1.30.2`` → ``1.30``, if within the supported range.

    Raises:
        UsageError: not a version, or outside ``OLDEST``..``NEWEST``.
    """
    match = re.fullmatch(r"v?(\d+)\.(\d+)(\.\d+)?", text.strip())
    if match is None:
        raise UsageError(f"--kubernetes-version: expected MAJOR.MINOR such as {NEWEST}, got {text!r}")
    wanted = (int(match.group(1)), int(match.group(2)))
    if not _key(OLDEST) <= wanted <= _key(NEWEST):
        raise UsageError(f"--kubernetes-version: {text} is outside the supported {OLDEST} to {NEWEST}")
    return f"{wanted[0]}.{wanted[1]}"


def _key(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def check_pod(config: Config, facts: NodeFacts, *, versions: tuple[str, ...] = SUPPORTED,
              job_id: int | None = None) -> list[str]:
    """Render the node's pod and return its problems, one line each (empty: valid).

    Raises:
        ConfigError, TemplateError: the pod does not render (as resume would fail).
    """
    from bridge.render import render_pod

    try:
        manifest = render_pod(config, facts, job_id=job_id).manifest
    except TemplateError:
        unparsable = _yaml_problem(config, facts, job_id)  # render names the output's line
        if unparsable:
            return [unparsable]
        raise
    nodeset = config.nodeset_for(facts.name)
    found: list[tuple[list[Any], str]] = []
    for kubernetes in versions:
        found += [(where, f"{message} (Kubernetes {kubernetes})") for where, message in schema_errors(manifest, kubernetes)]
    found += resource_errors(manifest)
    if nodeset.cpu_pinning:
        found += pinning_errors(manifest)
    path = config.template_path(nodeset)
    return [f"{path}:{_line_of(config, facts, job_id, where)}: node {facts.name}: {_dotted(where)}: {message}"
            for where, message in found]


def schema_errors(manifest: dict[str, Any], kubernetes: str) -> list[tuple[list[Any], str]]:
    """Where and why ``manifest`` breaks the strict OpenAPI schema of that Kubernetes version."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, kubernetes, strict=True)
    except kubernetes_validate.ValidationError as error:  # the first error only: fix, run again
        return [_schema_error(error)]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [([], error.message)]
    return []


def _schema_error(error: Any) -> tuple[list[Any], str]:
    where = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set((error.schema or {}).get("properties") or {})
        unknown = [key for key in error.instance if key not in known]
        if unknown:
            return where + [unknown[0]], f"unknown field {unknown[0]!r}"
    return where, error.message


def resource_errors(manifest: dict[str, Any]) -> list[tuple[list[Any], str]]:
    """Quantities the API server would refuse, and device requests that differ from limits
    (extended resources and huge pages cannot be overcommitted)."""
    found = []
    for where, container in _containers(manifest):
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for name, value in (resources.get(kind) or {}).items():
                if quantity(value) is None:
                    found.append((where + ["resources", kind, name], f"{value!r} is not a quantity"))
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        for name in sorted(set(limits) | set(requests)):
            device = "/" in name or name.startswith("hugepages-")
            if device and name in requests and quantity(requests[name]) != quantity(limits.get(name, "0")):
                found.append((where + ["resources", "requests", name], "must equal its limit (devices cannot be overcommitted)"))
    return found


def pinning_errors(manifest: dict[str, Any]) -> list[tuple[list[Any], str]]:
    """A ``cpu_pinning`` pod gets exclusive cores only if Guaranteed with whole CPUs in every
    container, init containers and sidecars included."""
    qos = qos_class(manifest)
    if qos != "Guaranteed":
        return [(["spec"], f"cpu_pinning needs the Guaranteed QoS class, the pod is {qos}")]
    found = []
    for where, container in _containers(manifest):
        cpu = quantity(((container.get("resources") or {}).get("limits") or {}).get("cpu", "0"))
        if cpu is None or cpu.denominator != 1:
            found.append((where + ["resources", "limits", "cpu"], "cpu_pinning needs whole CPUs"))
    return found


def qos_class(manifest: dict[str, Any]) -> str:
    """The pod's QoS class, by Kubernetes' rules: Guaranteed when every container (init
    containers too) has cpu and memory limits and requests equal to them; BestEffort when none
    has any; Burstable otherwise."""
    any_set, guaranteed = False, True
    for _, container in _containers(manifest):
        resources = container.get("resources") or {}
        limits = {k: quantity(v) for k, v in (resources.get("limits") or {}).items() if k in ("cpu", "memory")}
        requests = {**limits, **{k: quantity(v) for k, v in (resources.get("requests") or {}).items()
                                 if k in ("cpu", "memory")}}
        any_set = any_set or any(requests.values()) or any(limits.values())
        if set(limits) != {"cpu", "memory"} or any(requests[k] != limits[k] for k in limits):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def quantity(value: Any) -> Fraction | None:
    """A Kubernetes quantity (``4``, ``500m``, ``16Gi``, ``1e3``) as a number; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Fraction(value)
    match = _QUANTITY.match(str(value))
    if match is None:
        return None
    number, suffix = Fraction(match.group(1)), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * Fraction(10) ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def _containers(manifest: dict[str, Any]) -> list[tuple[list[Any], dict[str, Any]]]:
    spec = manifest.get("spec") or {}
    return [(["spec", kind, i], c) for kind in ("initContainers", "containers")
            for i, c in enumerate(spec.get(kind) or []) if isinstance(c, dict)]


def _dotted(where: list[Any]) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(document)"


def _line_of(config: Config, facts: NodeFacts, job_id: int | None, where: list[Any]) -> str:
    """The template line that wrote the field at ``where``, found by rendering again and
    following which template line produced each piece of output."""
    path, pieces = _render_traced(config, facts, job_id)
    offset = _offset_of("".join(piece for _, piece in pieces), where)
    return "?" if offset is None else str(_template_line(path, pieces, offset))


def _yaml_problem(config: Config, facts: NodeFacts, job_id: int | None) -> str | None:
    """Rendered text that is not YAML, with the template line (render says the output's)."""
    import yaml

    try:
        path, pieces = _render_traced(config, facts, job_id)
    except Exception:  # noqa: BLE001 - the template raised (1/0, Jinja's own errors): not a YAML
        return None  # problem, and render_pod's own message says what it is
    try:
        list(yaml.load_all("".join(piece for _, piece in pieces), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError as e:
        # An unclosed bracket is noticed lines later: its context mark is where it opened.
        mark = getattr(e, "context_mark", None) or getattr(e, "problem_mark", None)
        line = _template_line(path, pieces, mark.index) if mark is not None else "?"
        return f"{path}:{line}: node {facts.name}: rendered YAML does not parse: {getattr(e, 'problem', e)}"
    return None


def _render_traced(config: Config, facts: NodeFacts, job_id: int | None) -> tuple[Path, list[tuple[int, str]]]:
    from bridge import render

    nodeset = config.nodeset_for(facts.name)
    path = config.template_path(nodeset)
    template = render._environment(str(path.parent)).get_template(path.name)
    return path, _traced(template, render._context(config, nodeset, facts, job_id))


def _template_line(path: Path, pieces: list[tuple[int, str]], offset: int) -> int:
    text = "".join(piece for _, piece in pieces)
    start = 0
    for line, piece in pieces:
        if offset < start + len(piece):
            return _static_line(path, line, text, offset, piece, start)
        start += len(piece)
    return pieces[-1][0] + pieces[-1][1].count("\n") if pieces else 1


def _traced(template: Any, context: dict[str, Any]) -> list[tuple[int, str]]:
    """Output pieces with the template line each starts on: Jinja's generator yields a piece
    per output node, and its innermost frame's line maps back to the template."""
    pieces = []
    generator = template.generate(context)
    for piece in generator:
        inner = generator
        while getattr(inner, "gi_yieldfrom", None) is not None:
            inner = inner.gi_yieldfrom
        frame = getattr(inner, "gi_frame", None)
        line = template.get_corresponding_lineno(frame.f_lineno) if frame is not None else 1
        pieces.append((line, piece))
    return pieces


def _static_line(path: Path, line: int, text: str, offset: int, piece: str, piece_start: int) -> int:
    """A piece of static text may start after stripped whitespace (``-%}``), so its reported
    line is a guess: take the nearest template line that holds the rendered line's static part.
    An expression's piece matches no template line and keeps its reported line, which is exact."""
    guess = line + text.count("\n", piece_start, offset)
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_end = len(text) if line_end < 0 else line_end
    part = text[max(line_start, piece_start): min(line_end, piece_start + len(piece))]
    source = path.read_text().splitlines()
    if not part.strip():
        return guess
    starts_line = piece_start <= line_start
    near = sorted(range(max(1, guess - 3), min(guess + 20, len(source)) + 1), key=lambda n: abs(n - guess))
    key = part[: part.find(":") + 1] if starts_line and ":" in part else None
    for wanted in (part, key):  # the whole static part, else its `key:` (folded constants)
        for number in near:
            candidate = source[number - 1]
            if wanted and (candidate.startswith(wanted) if starts_line else wanted in candidate):
                return number
    return guess


def _offset_of(text: str, where: list[Any]) -> int | None:
    """Character offset of the YAML node (or mapping key) at ``where`` in the rendered text."""
    import yaml

    node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for depth, part in enumerate(where, start=1):
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                return node.start_mark.index
            key, node = match[0]
            if depth == len(where):
                return key.start_mark.index  # the line that names the field
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.index if node is not None else None


def gang_api_problems(config: Config, nodes: list[str]) -> tuple[list[str], list[str]]:
    """(problems, warnings): one line per PodGroup API a checked node's gang needs that the
    cluster does not serve, or that the bridge may not read; a warning when the cluster cannot
    be asked at all (render --check also serves offline template checks).

    Asked with a get of a PodGroup that does not exist, which the Role already grants: a served
    group answers NotFound, a missing one a plain-text 404 (:class:`~bridge.errors.NotServed`)."""
    import msgspec
    import stamina

    from bridge import gang
    from bridge.errors import BridgeError, KubernetesUnavailable, NotServed
    from bridge.kube import LightkubeApi

    needed: dict[tuple[str, str, str], str] = {}
    for node in nodes:
        nodeset = config.nodeset_for(node)
        if nodeset.gang is not None and nodeset.gang.kind in gang.POD_GROUP_KINDS:
            needed.setdefault(gang.POD_GROUP_KINDS[nodeset.gang.kind], nodeset.name)
    problems: list[str] = []
    warnings: list[str] = []
    if not needed:
        return problems, warnings
    settings = msgspec.structs.replace(config.kubernetes, retry_seconds=min(config.kubernetes.retry_seconds, 2.0))
    hooks = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([])  # retries would print to stdout, among the pods
    try:
        with LightkubeApi(settings) as kube:
            for (api_version, kind, _), nodeset in needed.items():
                try:
                    kube.get_object((api_version, kind, "slurm-k8s-bridge-check"))
                except NotServed:
                    problems.append(f"nodeset {nodeset}: gang: {gang.not_served(api_version)}")
                except KubernetesUnavailable:
                    raise
                except BridgeError as e:
                    problems.append(f"nodeset {nodeset}: gang: cannot read {api_version} {kind}s: {e}")
    except (KubernetesUnavailable, ConfigError) as e:
        warnings.append(f"cannot tell whether the cluster serves {', '.join(k[0] for k in needed)}: {e}")
    finally:
        stamina.instrumentation.set_on_retry_hooks(hooks)
    return problems, warnings
