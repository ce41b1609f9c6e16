"""Bad input through the real entry points: every row runs a console script's ``main`` in
process (argv, environment and stderr as slurmctld or a shell gives them) and checks what a
user sees: exactly one stderr line ``prog: kind: message``, the documented exit code
(README, "Exit codes"), the expected words, and never a traceback.

Input the bridge must accept without changing anything it should not (features and Gres
text that look like Slurm fields) is in the same table, expecting exit 0 and no stderr.

Slurm is the 22.05 answers of ``tests/samples/sinfo-22.05.json`` behind a fake ``scontrol``
that records its updates; no Kubernetes call is made by any row.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from bridge import cli, hooks, prolog

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

NODESET = '{name: cpu, nodes: "elastic[1-4],gpu1,ghost7,w{{7*7}}", image: "slurm-k8s-bridge/slurmd:22.05.8"}'
CONFIG = """\
slurm: {conf_server: "127.0.0.1:6817", bin_dir: "{bin}"}
kubernetes: {kubeconfig: "{dir}/kubeconfig", retry_seconds: 0.1, timeout: 1}
log: {file: "{dir}/bridge.log"}
resume: {state_dir: "{dir}/state", follow: false}
nodesets:
  - {nodeset}
"""


@dataclass(frozen=True)
class Case:
    entry: str  # console script
    argv: tuple[str, ...]
    code: int
    says: str = ""  # words the stderr line must hold
    config: str | None = None  # a whole config file, or None for the valid one
    resume_file: str | bytes | None = None
    features: dict[str, str] = field(default_factory=dict)  # node -> AvailableFeatures in Slurm
    gres: dict[str, str] = field(default_factory=dict)
    check: Callable[[str], None] | None = None  # on stdout, for accepted input


def _config(extra: str = "", nodeset: str = NODESET) -> str:
    return CONFIG.replace("{nodeset}", nodeset) + textwrap.dedent(extra)


BAD_HOSTLISTS = {
    "empty": ("", "empty hostlist"),
    "space": ("a b", "whitespace"),
    "tab": ("a\tb", "whitespace"),
    "newline + fields": ("elastic1\nNodeName=elastic2", "whitespace"),
    "unicode space": ("a\u00a0b", "whitespace"),
    "set operators": ("a|x&y>z", "'|'"),
    "@group": ("elastic[1-4],@all", "'@'"),
    "intersection": ("elastic[1-4]&elastic1", "'&'"),
    "negation": ("!elastic1", "'!'"),
    "xor": ("elastic1^elastic2", "'^'"),
    "unclosed": ("elastic[1-", "'[' without ']'"),
    "unopened": ("elastic]", "']' without '['"),
    "nested": ("a[[1]]", "nested"),
    "suffix": ("a[1-2]b", "after the last ']'"),
    "reversed": ("a[3-1]", "3 > 1"),
    "letters": ("a[x-y]", "bad range"),
    "empty brackets": ("a[]", "bad range"),
    "empty item": ("a,,b", "empty name"),
    "leading comma": (",a", "empty name"),
    "trailing comma": ("a,", "empty name"),
    "range over Slurm's limit": ("a[1-70000]", "65,536"),
    "10^6 names": ("n[0-999][000-999]", "more than 100,000 nodes"),
    "10,000 characters": ("x" * 10_000 + "|", "(10001 characters)"),
    "5,000-digit number": ("a[" + "9" * 5_000 + "]", "a number of more than 18 digits"),
    "19-digit range end": ("a[1-" + "9" * 19 + "]", "a number of more than 18 digits"),
}

CASES: dict[str, Case] = {}
for hook in ("slurm-k8s-resume", "slurm-k8s-suspend", "slurm-k8s-resume-fail"):
    for name, (expression, says) in BAD_HOSTLISTS.items():
        CASES[f"{hook} hostlist {name}"] = Case(hook, (expression,), 64, says)
    CASES[f"{hook} no argument"] = Case(hook, (), 64, "expected one argument")
    CASES[f"{hook} two arguments"] = Case(hook, ("elastic1", "elastic2"), 64, "got 2")
    CASES[f"{hook} option"] = Case(hook, ("--verbose",), 64, "unknown option '--verbose'")

RESUME_FILES = {
    "not JSON": (b"{jobs", 65, "not JSON"),
    "not an object": ("[]", 65, "expected a JSON object"),
    "job id 1.5": ('{"jobs":[{"job_id":1.5,"nodes":"elastic1"}],"all_nodes":"elastic1"}', 65, "got 1.5"),
    "job id true": ('{"jobs":[{"job_id":true,"nodes":"elastic1"}],"all_nodes":"elastic1"}', 65, "got true"),
    "negative job id": ('{"jobs":[{"job_id":-3,"nodes":"elastic1"}],"all_nodes":"elastic1"}', 65, "got -3"),
    "job id as text": ('{"jobs":[{"job_id":"7","nodes":"elastic1"}],"all_nodes":"elastic1"}', 65, 'got "7"'),
    "job without id": ('{"jobs":[{"nodes":"elastic1"}],"all_nodes":"elastic1"}', 65, "without 'job_id'"),
    "jobs not a list": ('{"jobs":{"6":"elastic1"},"all_nodes":"elastic1"}', 65, "jobs: expected a list"),
    "malformed nodes": ('{"jobs":[{"job_id":6,"nodes":"elastic[1-"}],"all_nodes":"elastic1"}', 65, "malformed hostlist"),
    "nodes not text": ('{"jobs":[{"job_id":6,"nodes":5}],"all_nodes":"elastic1"}', 65, "must be a string"),
    "set operator in all_nodes": ('{"jobs":[],"all_nodes":"elastic1|elastic2"}', 65, "'|'"),
    "10^6 names": ('{"jobs":[],"all_nodes_resume":"n[0-999][000-999]"}', 65, "more than 100,000"),
}
for name, (text, code, says) in RESUME_FILES.items():
    CASES[f"resume file {name}"] = Case("slurm-k8s-resume", ("elastic1",), code, says, resume_file=text)

CONFIGS = {
    "NaN deadline": ("resume: {deadline: .nan}", "resume.deadline: expected a finite number, got nan"),
    "infinite deadline": ("resume: {deadline: .inf}", "resume.deadline: expected a finite number"),
    "NaN qps": ("kubernetes: {qps: .nan}", "kubernetes.qps: expected a finite number"),
    "infinite qps": ("kubernetes: {qps: .inf}", "kubernetes.qps: expected a finite number"),
    "qps the hook never finishes at": ("kubernetes: {qps: 0.0001}", "kubernetes.qps: expected at least 1"),
    "no burst": ("kubernetes: {burst: 0}", "kubernetes.burst: expected at least 1"),
    "NaN timeout": ("kubernetes: {timeout: .nan}", "kubernetes.timeout: expected a finite number"),
    "minus infinite cooldown": ("resume: {cooldown: -.inf}", "resume.cooldown: expected a finite number"),
    "NaN prolog timeout": (None, "slurm.prolog_timeout: expected a finite number"),
    "zero attempts": ("resume: {max_attempts: 0}", "resume.max_attempts: expected at least 1"),
    "qps as text": ("kubernetes: {qps: fast}", "kubernetes.qps: expected `float`"),
    "unknown key": ("resume: {deadlin: 5}", "unknown field `deadlin`"),
    "bad namespace": ("kubernetes: {namespace: Slurm_NS}", "kubernetes.namespace: expected a DNS-1123 label"),
    "NaN daemon tick": ("daemon: {tick: .nan}", "daemon.tick: expected a finite number, got nan"),
    "timeout Python cannot wait": ("kubernetes: {timeout: 1.0e+29}", "kubernetes.timeout: expected at most 1000000000"),
    "a 30-digit burst": ("kubernetes: {burst: 999999999999999999999999999999}",
                         "kubernetes.burst: expected at most 1000000000"),
    "infinite lease": ("daemon: {lease_duration: .inf}", "daemon.lease_duration: expected a finite number"),
    "negative orphan grace": ("daemon: {orphan_grace: -1}", "daemon.orphan_grace: expected at least 0, got -1"),
    "metrics address without a port": ("daemon: {metrics_address: localhost}", "daemon.metrics_address: expected host:port"),
    "metrics port out of range": ("daemon: {metrics_address: '127.0.0.1:70000'}", "daemon.metrics_address: expected"),
}
for name, (extra, says) in CONFIGS.items():
    text = _config(extra) if extra else _config().replace('bin_dir: "{bin}"', 'bin_dir: "{bin}", prolog_timeout: .nan')
    CASES[f"config {name}"] = Case("slurm-k8s-suspend", ("elastic1",), 78, says, config=text)
for name, (nodes, says) in {"@group": ("elastic[1-4],@all", "'@'"), "set operator": ("a|b", "'|'"),
                            "unclosed": ("elastic[1-", "without ']'"), "space": ("elastic1 elastic2", "whitespace"),
                            "10^6 names": ("n[0-999][000-999]", "more than 100,000")}.items():
    nodeset = NODESET.replace('"elastic[1-4],gpu1,ghost7,w{{7*7}}"', json.dumps(nodes))
    CASES[f"config nodeset hostlist {name}"] = Case("slurm-k8s-suspend", ("elastic1",), 78, says,
                                                    config=_config(nodeset=nodeset))
CASES["config not YAML"] = Case("slurm-k8s-suspend", ("elastic1",), 78, "not valid YAML", config="slurm: [\n")
CASES["config a list"] = Case("slurm-k8s-suspend", ("elastic1",), 78, "expected a mapping", config="- a\n")
CASES["config empty"] = Case("slurm-k8s-suspend", ("elastic1",), 78, "the file is empty", config="")

for name, node in {"ghost7": "ghost7", "unicode": "nœud-ü", "10,000 characters": "g" * 10_000,
                   "5,000 digits": "n" + "7" * 5_000}.items():
    CASES[f"resume unknown node {name}"] = Case("slurm-k8s-resume", (node,), 68, "Slurm does not know this node")
    CASES[f"render unknown node {name}"] = Case("slurm-k8s-bridge", ("render", node), 68, "Slurm does not know node")

CLI = {
    "no command": ((), "expected a command"),
    "unknown option": (("--bogus",), "no such option '--bogus'"),
    "unknown command": (("nosuch",), "no such command 'nosuch'"),
    "missing nodes": (("render",), "missing argument 'NODES...'"),
    "job id not a number": (("render", "--job-id", "x", "elastic1"), "invalid value for '--job-id'"),
    "negative job id": (("render", "--job-id", "-3", "elastic1"), "invalid value for '--job-id'"),
    "job id past Slurm's uint32": (("render", "--job-id", "4294967296", "elastic1"), "invalid value for '--job-id'"),
    "set operator": (("render", "a|b"), "'|'"),
    "@group": (("suspend", "@all"), "'@'"),
    "version without check": (("render", "elastic1", "--kubernetes-version", "1.30"), "goes with --check"),
}
for name, (argv, says) in CLI.items():
    CASES[f"cli {name}"] = Case("slurm-k8s-bridge", argv, 64, says)
# The arguments are checked before Kubernetes or Slurm is asked anything: here neither could answer.
for command in ("resume", "suspend"):
    CASES[f"cli {command} malformed hostlist, no kubeconfig"] = Case(
        "slurm-k8s-bridge", (command, "elastic[1-"), 64, "'[' without ']'",
        config=_config().replace("{dir}/kubeconfig", "{dir}/no-such-kubeconfig"))
CASES["bin_dir naming scontrol itself"] = Case(
    "slurm-k8s-resume", ("elastic1",), 69, "Not a directory (set slurm.bin_dir",
    config=_config().replace('bin_dir: "{bin}"', 'bin_dir: "{bin}/scontrol"'))
CASES["cli bogus kubernetes version, no Slurm"] = Case(
    "slurm-k8s-bridge", ("render", "--check", "--kubernetes-version", "bogus", "elastic1"), 64, "expected MAJOR.MINOR",
    config=_config().replace('bin_dir: "{bin}"', 'bin_dir: "/nonexistent"'))


def _cpus(expected: dict[str, str]) -> Callable[[str], None]:
    def check(stdout: str) -> None:
        pods = {p["metadata"]["annotations"]["slurm-k8s-bridge/node-name"]: p for p in yaml.safe_load_all(stdout)}
        assert {n: p["spec"]["containers"][0]["resources"]["limits"]["cpu"] for n, p in pods.items()} == expected
    return check


# Accepted: what looks like Slurm's own fields inside a feature or Gres changes no node.
CASES["feature with fields"] = Case("slurm-k8s-bridge", ("render", "elastic[1-2]"), 0, check=_cpus({"elastic1": "2", "elastic2": "2"}),
                                    features={"elastic1": "fast CPUTot=64 RealMemory=99999"})
CASES["feature with a newline and another node"] = Case(
    "slurm-k8s-bridge", ("render", "elastic[1-2]"), 0, check=_cpus({"elastic1": "2", "elastic2": "2"}),
    features={"elastic2": "x\nNodeName=elastic1 CPUTot=99 RealMemory=1"})
CASES["feature naming a node"] = Case("slurm-k8s-bridge", ("render", "elastic1"), 0, check=_cpus({"elastic1": "2"}),
                                      features={"elastic1": "x NodeName=elastic2"})
CASES["gres with fields"] = Case("slurm-k8s-bridge", ("render", "gpu1"), 0, check=_cpus({"gpu1": "8"}),
                                 gres={"gpu1": "gpu:1g.10gb CPUTot=64:1"})
def _says(start: str, *words: str) -> Callable[[str], None]:
    def check(out: str) -> None:
        assert out.startswith(start) and all(w in out for w in words), out
    return check


CASES["hook help"] = Case("slurm-k8s-resume", ("--help",), 0, check=_says("usage: slurm-k8s-resume"))
CASES["cli help"] = Case("slurm-k8s-bridge", ("--help",), 0, check=_says("Usage: ", "render", "suspend", "status"))
CASES["prolog help"] = Case("slurm-k8s-prolog", ("--help",), 0, check=_says("usage: slurm-k8s-prolog", "SLURM_JOB_ID"))

KINDS = {64: ("usage",), 65: ("resume-file",), 68: ("partial", "slurm"), 69: ("partial", "slurm"), 78: ("config",)}
"""The ``kind`` word of the line, by exit code."""

ENTRIES = {"slurm-k8s-resume": hooks.resume_main, "slurm-k8s-suspend": hooks.suspend_main,
           "slurm-k8s-resume-fail": hooks.resume_fail_main, "slurm-k8s-bridge": cli.main, "slurm-k8s-prolog": prolog.main}


def _slurm(bin_dir: Path, case: Case) -> None:
    """scontrol and sinfo of 22.05: no --json for scontrol, sinfo's JSON with the case's features."""
    data = json.loads((SAMPLES / "sinfo-22.05.json").read_text())
    for node in data["nodes"]:
        node["features"] = case.features.get(node["name"], "cpu")
        node["gres"] = case.gres.get(node["name"], node["gres"])
    (bin_dir / "sinfo.json").write_text(json.dumps(data))
    scripts = {
        "scontrol": f"""case "$*" in *--json*) echo "scontrol: unrecognized option '--json'" >&2; exit 1;; esac
echo "$*" >> "{bin_dir}/updates\"""",
        "sinfo": f'cat "{bin_dir}/sinfo.json"',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)


def run(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _slurm(bin_dir, case)
    (tmp_path / "kubeconfig").write_text(textwrap.dedent("""
        apiVersion: v1
        kind: Config
        clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
        users: [{name: u, user: {token: t}}]
        contexts: [{name: x, context: {cluster: c, user: u, namespace: slurm}}]
        current-context: x
        """))
    config = tmp_path / "k8s-bridge.yaml"
    config.write_text((case.config if case.config is not None else _config())
                      .replace("{bin}", str(bin_dir)).replace("{dir}", str(tmp_path)))
    for name in [n for n in os.environ if n.startswith(("SLURM", "KUBECONFIG"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    monkeypatch.setenv("SLURM_K8S_BRIDGE_CONFIG", str(config))
    if case.resume_file is not None:
        path = tmp_path / "resume.json"
        path.write_bytes(case.resume_file if isinstance(case.resume_file, bytes) else case.resume_file.encode())
        monkeypatch.setenv("SLURM_RESUME_FILE", str(path))
    monkeypatch.setattr(sys, "argv", [case.entry, *case.argv])
    code = 0
    try:
        ENTRIES[case.entry]()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    code, out, err = run(case, tmp_path, monkeypatch, capsys)
    assert "Traceback" not in err
    if case.code == 0:
        assert (code, err) == (0, ""), err
        assert case.check(out) is None, "a check asserts; it returns nothing"
        return
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = f"{case.entry}: "
    assert lines[0].startswith(prefix) and lines[0][len(prefix):].split(": ")[0] in KINDS[case.code], lines[0]
    assert case.says in lines[0], lines[0]
    assert len(lines[0]) < 400, lines[0]
    assert code == case.code, lines[0]
