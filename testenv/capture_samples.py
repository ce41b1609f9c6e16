"""Capture what a real slurmctld of each release tells the bridge, as samples for the tests.

    .venv/bin/python -m testenv.capture_samples 24.11 26.05      # writes tests/samples/*-<release>*.json

For each release, slurmctld runs in its container (testenv/ctld_container.py) with four CLOUD
nodes and a ResumeProgram that copies $SLURM_RESUME_FILE, and:

1. an admin powers elastic4 up by hand (release(...).power_up): resume-file-<release>-manual.json;
   its slurmd (the slurmd image of that release) registers;
2. two jobs are made eligible in one scheduling pass (submitted to a DOWN partition that is then
   set UP), so slurmctld resumes both jobs' nodes in one call: resume-file-<release>.json. The
   first job gets elastic4, already up, and one powered-down node: only that one is resumed;
3. the nodes are now in four states (allocated and powering up, powered down, allocated and up):
   scontrol-show-node-<release>.json (23.02+) and sinfo-<release>.json;
4. after ResumeTimeout the resumed nodes are DOWN and their jobs requeued:
   scontrol-show-node-<release>-resume-timeout.json and sinfo-<release>-resume-timeout.json.

Nothing of the host shows in the files beyond loopback addresses and the names given here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testenv import docker as engine
from testenv.ctld_container import SlurmctldContainer, docker_cli, render_conf
from testenv.slurm import free_ports
from testenv.slurm_versions import release

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "samples"
RESUME_TIMEOUT = 25
CAPTURE = """#!/bin/sh
# ResumeProgram of the capture: the file exists only while slurmctld holds it open.
cat "$SLURM_RESUME_FILE" >"{dir}/.resume-$$" && mv "{dir}/.resume-$$" "{dir}/$(date +%s%N)-$1.json"
"""


def wait(condition, timeout: float, what: str):  # noqa: ANN001, ANN201 - a script's helper
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"capture_samples: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return result


def captured(directory: Path, count: int) -> list[Path]:
    files = sorted(directory.glob("*.json"))
    return files if len(files) >= count else []


def pretty(text: str) -> str:
    return json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def capture(version: str, out: Path, docker_env: dict[str, str]) -> list[Path]:
    rel = release(version)
    work = Path(tempfile.mkdtemp(prefix="sk8s-samples-", dir="/var/tmp"))
    work.chmod(0o755)  # the hook runs as SlurmUser (slurm) in the container
    resumes = work / "resumes"
    resumes.mkdir()
    shutil.chown(resumes, "slurm", "slurm")
    hook = work / "capture-resume"
    hook.write_text(CAPTURE.format(dir=resumes))
    hook.chmod(0o755)
    port = free_ports(5)
    conf = render_conf(version, cluster="samples", port=port, log_dir=work / "log", nodes="elastic[1-4]",
                       node_ports=f"[{port + 1}-{port + 4}]", node_options="CPUs=1 RealMemory=500 Features=ssd",
                       power={"ResumeProgram": str(hook), "SuspendProgram": "/bin/true",
                              "ResumeFailProgram": None, "PrologSlurmctld": None,
                              "ResumeTimeout": str(RESUME_TIMEOUT), "SuspendTime": "600"})
    ctld = SlurmctldContainer(version, share=work, conf=conf, docker_env=docker_env, port=port).start()
    slurmd = f"{ctld.name}-elastic4"
    written: list[Path] = []

    def save(name: str, text: str) -> None:
        path = out / name
        path.write_text(pretty(text))
        written.append(path)

    def nodes_json(suffix: str) -> None:
        if rel.node_json:
            save(f"scontrol-show-node-{rel.name}{suffix}.json", ctld.run("scontrol", "show", "node", "--json").stdout)
        save(f"sinfo-{rel.name}{suffix}.json", ctld.run("sinfo", "--json").stdout)

    def state(node: str) -> str:
        return ctld.run("sinfo", "-h", "-N", "-n", node, "-o", "%t").stdout.strip()

    try:
        time.sleep(max(0.0, ctld.started_at + 4 - time.monotonic()))  # the first pass schedules at 3 s
        ctld.run(*rel.power_up("elastic4"))
        manual = wait(lambda: captured(resumes, 1), 30, "the manual power up's resume call")[0]
        save(f"resume-file-{rel.name}-manual.json", manual.read_text())
        subprocess.run([docker_cli(), "run", "-d", "--name", slurmd, "--network", "host", "--hostname", "elastic4",
                        "-v", f"{ctld.munge_key_path}:/etc/munge/munge.key:ro",
                        engine.slurmd_image(version), "-b", "-N", "elastic4", "--conf-server", ctld.address],
                       env={**os.environ, **docker_env}, check=True, capture_output=True)
        wait(lambda: state("elastic4") == "idle", 30, "elastic4's slurmd to register")

        ctld.run("scontrol", "update", "PartitionName=elastic", "State=DOWN")
        ctld.run("sbatch", "-N2", "--job-name=plain", "--wrap", "sleep 300")
        ctld.run("sbatch", "-N1", "--job-name=ssd", "--constraint=ssd", "--wrap", "sleep 300")
        ctld.run("scontrol", "update", "PartitionName=elastic", "State=UP")
        jobs_call = wait(lambda: captured(resumes, 2), 30, "the jobs' resume call")[1]
        jobs = json.loads(jobs_call.read_text())["jobs"]
        if len(jobs) != 2:
            raise SystemExit(f"capture_samples: {version}: one call resumed {len(jobs)} job(s): "
                             f"{jobs_call.read_text()}")
        save(f"resume-file-{rel.name}.json", jobs_call.read_text())
        nodes_json("")
        call = json.loads(jobs_call.read_text())
        resumed = call.get("all_nodes_resume") or call["all_nodes"]  # 23.02 renamed it
        wait(lambda: state(resumed).split() == ["down~"] * 2, RESUME_TIMEOUT + 30, "ResumeTimeout")
        nodes_json("-resume-timeout")
    finally:
        subprocess.run([docker_cli(), "rm", "-f", slurmd], env={**os.environ, **docker_env}, capture_output=True,
                       check=False)
        ctld.stop()
        shutil.rmtree(work, ignore_errors=True)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testenv.capture_samples", description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="+", help="Slurm releases, e.g. 24.11 26.05")
    parser.add_argument("--out", type=Path, default=SAMPLES)
    args = parser.parse_args(argv)
    with engine.engine() as docker_env:
        for version in args.versions:
            for path in capture(version, args.out, docker_env):
                print(f"capture_samples: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
