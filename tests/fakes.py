"""In-memory stand-ins for the two client protocols (:class:`bridge.slurm.SlurmClient`,
:class:`bridge.kube.KubeClient`), for unit tests of the flows."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from bridge.errors import Conflict, KubernetesError, SlurmError
from bridge.slurm import NodeFacts, reason


class FakeSlurm:
    """Nodes and jobs; DOWN or POWER_DOWN_FORCE requeue a node's job, as slurmctld does."""

    def __init__(self, facts: dict[str, NodeFacts]) -> None:
        self.facts = facts
        self.down: dict[str, str] = {}
        self.powered_down: dict[str, str] = {}
        self.jobs: dict[int, dict] = {}  # job id -> {"nodes": [...], "restarts": n, "held": comment, "delay": s}
        self.calls: list[str] = []  # node updates, as scontrol calls: "set_down 2", "power_down 1"
        self.planned: list[tuple[float, tuple[str, ...]]] = []  # squeue's StartTime, SchedNodes of pending jobs

    version = None
    """The controller's SlurmVersion, where a test needs one (class-wide: the CLI makes its own)."""

    def learn_version(self):  # noqa: ANN201 - CommandSlurm's
        return self.version

    def add_job(self, job_id: int, nodes: list[str], restarts: int = 0, requeue: bool = True) -> None:
        """``requeue=False``: an srun or --no-requeue job, which Slurm ends on a node failure."""
        self.jobs[job_id] = {"nodes": nodes, "restarts": restarts, "held": None, "delay": None,
                             "state": "CONFIGURING", "requeue": requeue}

    def planned_starts(self) -> list[tuple[float, tuple[str, ...]]]:
        """The pending jobs the scheduler placed; raises ``self.unreachable`` when set."""
        if getattr(self, "unreachable", None):
            raise self.unreachable
        return list(self.planned)

    def _requeue_jobs_on(self, nodes: list[str]) -> None:
        for job in self.jobs.values():
            if set(job["nodes"]) & set(nodes) and job["state"] == "CONFIGURING":
                job["restarts"] += job["requeue"]
                job["state"] = "PENDING" if job["requeue"] else "NODE_FAIL"

    def power_down(self, nodes: list[str], reason_text: str) -> None:
        self.calls.append(f"power_down {len(nodes)}")
        for node in nodes:
            self.powered_down[node] = reason(reason_text)
        self._requeue_jobs_on(nodes)

    def power_up(self, nodes: list[str]) -> None:
        """Slurm refuses a node that is not powered down; the others start powering up."""
        self.calls.append(f"power_up {len(nodes)}")
        for node in nodes:
            fact = self.facts[node]
            if "POWERED_DOWN" not in fact.state:
                raise SlurmError(f"scontrol update failed: Node {node} is not powered down")
            # As slurmctld 22.05 shows it until slurmd registers.
            state = tuple(s for s in fact.state if s != "POWERED_DOWN") + ("NOT_RESPONDING", "POWERING_UP")
            self.facts[node] = replace(fact, state=state)

    def power_down_idle(self, nodes: list[str]) -> None:
        self.calls.append(f"power_down_idle {len(nodes)}")
        for node in nodes:
            fact = self.facts[node]
            self.facts[node] = replace(fact, state=tuple(s for s in fact.state if s not in ("POWERING_UP", "NOT_RESPONDING"))
                                       + ("POWERING_DOWN",))

    def jobs_on(self, nodes: list[str]) -> list[tuple[int, tuple[str, ...]]]:
        """squeue's CONFIGURING and RUNNING jobs on any of ``nodes``; raises ``self.unreachable``
        when set (slurmctld down)."""
        if getattr(self, "unreachable", None):
            raise self.unreachable
        return [(i, tuple(j["nodes"])) for i, j in self.jobs.items()
                if j["state"] in ("CONFIGURING", "RUNNING") and set(j["nodes"]) & set(nodes)]

    def job_state(self, job_id: int) -> tuple[str, int] | None:
        job = self.jobs.get(job_id)
        return None if job is None else (job["state"], job["restarts"])

    def hold(self, job_id: int, comment: str) -> None:
        self._pending(job_id)["held"] = reason(comment)

    def delay(self, job_id: int, seconds: float) -> None:
        self._pending(job_id)["delay"] = seconds

    def _pending(self, job_id: int) -> dict:
        if self.jobs[job_id]["state"] != "PENDING":  # what scontrol says of a job that is not
            raise SlurmError(f"scontrol update failed: Job is no longer pending execution for job {job_id}")
        return self.jobs[job_id]

    def node_facts(self, nodes: list[str]) -> dict[str, NodeFacts]:
        return {n: self.facts[n] for n in nodes if n in self.facts}

    def set_down(self, nodes: list[str], reason_text: str) -> None:
        self.calls.append(f"set_down {len(nodes)}")
        for node in nodes:
            self.down[node] = reason(reason_text)
        self._requeue_jobs_on(nodes)


def _matches(labels: dict[str, str], selector: dict[str, Any]) -> bool:
    """lightkube's selector: a string value is ``key=value``, a list ``key in (...)``."""
    return all(labels.get(k) in v if isinstance(v, list) else labels.get(k) == v for k, v in selector.items())


class FakeKube:
    """Pods by name; ``refuse[name] = error`` makes creating that pod fail."""

    namespace = "slurm"

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.refuse: dict[str, KubernetesError] = {}
        self.events: list[dict[str, Any]] = []
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}  # (pod, container) -> what the container wrote
        self.refuse_delete: dict[str, KubernetesError] = {}  # pod name -> the error its delete gets
        self.calls: list[str] = []
        self.selectors: list[dict[str, Any]] = []  # the label selector of each listing, as lightkube takes it

    def create_pods(self, manifests: list[dict[str, Any]]) -> dict[str, KubernetesError | None]:
        self.calls.append(f"create {len(manifests)}")
        out: dict[str, KubernetesError | None] = {}
        for manifest in manifests:
            name = manifest["metadata"]["name"]
            if name in self.refuse:
                out[name] = self.refuse[name]
            elif name in self.pods:
                out[name] = Conflict(f'AlreadyExists: pods "{name}" already exists', code=409,
                                     reason="AlreadyExists")
            else:
                pod = copy.deepcopy(manifest)
                pod["metadata"].setdefault("uid", f"uid-{name}-{len(self.calls)}")
                pod.setdefault("status", {"phase": "Pending"})
                self.pods[name] = pod
                out[name] = None
        return out

    def get_pod(self, name: str) -> dict[str, Any] | None:
        self.calls.append("get")
        return copy.deepcopy(self.pods.get(name))

    def list_pods(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        self.calls.append("list")
        self.selectors.append(labels)
        return [copy.deepcopy(p) for p in self.pods.values() if _matches(p["metadata"].get("labels") or {}, labels)]

    def list_pod_metadata(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """As the API server's pages: each pod's metadata alone (a caller reading its status
        or spec from here finds none, as it would from the real listing)."""
        return [{"metadata": p["metadata"]} for p in self.list_pods(labels)]

    def delete_pods(self, names: list[str]) -> dict[str, KubernetesError | None]:
        self.calls.append(f"delete {len(names)}")
        for name in names:
            if name not in self.refuse_delete:
                self.pods.pop(name, None)
        return {name: self.refuse_delete.get(name) for name in names}

    def create_objects(self, manifests: list[dict[str, Any]]) -> dict[str, KubernetesError | None]:
        self.calls.append(f"create-objects {len(manifests)}")
        out: dict[str, KubernetesError | None] = {}
        for manifest in manifests:
            name = manifest["metadata"]["name"]
            ref = (manifest["apiVersion"], manifest["kind"], name)
            out[name] = self.refuse.get(name)
            if out[name] is None and ref in self.objects:
                out[name] = Conflict(f'AlreadyExists: {manifest["kind"].lower()}s "{name}" already exists',
                                     code=409, reason="AlreadyExists")
            elif out[name] is None:
                self.objects[ref] = copy.deepcopy(manifest)
        return out

    def get_object(self, ref: tuple[str, str, str]) -> dict[str, Any] | None:
        self.calls.append("get-object")
        return copy.deepcopy(self.objects.get(tuple(ref)))

    def delete_objects(self, refs: list[tuple[str, str, str]]) -> dict[str, KubernetesError | None]:
        self.calls.append(f"delete-objects {len(refs)}")
        for ref in refs:
            self.objects.pop(tuple(ref), None)
        return {ref[2]: None for ref in refs}

    def pod_log(self, name: str, container: str, tail_lines: int) -> str:
        self.calls.append("log")
        if (name, container) not in self.logs:  # what kube-apiserver says of a container not started
            raise KubernetesError(f'BadRequest: container "{container}" in pod "{name}" is waiting to start: '
                                  "ContainerCreating", code=400, reason="BadRequest")
        lines = self.logs[(name, container)].splitlines(keepends=True)
        return "".join(lines[-tail_lines:])

    def emit_event(self, pod: dict[str, Any], *, reason: str, message: str, warning: bool = True) -> None:
        self.events.append({"pod": pod["metadata"]["name"], "reason": reason, "message": message})
