"""The Docker figures: image sizes; slurmd container start → node registered with slurmctld;
sbatch -N2 → batch script running with the Docker runtime (target: median ≤ 3 s).

    bash testenv/docker-setup.sh        # once: the engine's images
    PYTHONPATH=. .venv/bin/python benchmarks/docker_latency.py [RUNS]

Starts the project's Docker engine (testenv/docker.py) for its time and stops it after.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import summary
from benchmarks.sbatch_latency import one_job, powered_down
from testenv import docker as engine
from testenv.env import Environment
from testenv.slurm import NodeGroup, SlurmCluster


def image_sizes(client: object) -> None:
    version = engine.slurm_version()
    for tag in ("debian:bookworm-slim", engine.slurmd_image(version), engine.slurmctld_image(version),
                f"slurm-k8s-bridge/testenv:{version}"):
        try:
            size = client.images.get(tag).attrs["Size"]  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 (a missing image is reported, not fatal)
            print(f"image {tag}: {e}")
            continue
        print(f"image {tag}: {size / 1e6:.1f} MB")


def registration(client: object, runs: int) -> list[float]:
    """A fresh node per run (a registered node stays registered after its slurmd stops)."""
    import docker

    samples = []
    with SlurmCluster(node_groups=(NodeGroup(count=runs),)) as cluster:
        key_dir = Path(tempfile.mkdtemp(prefix="munge-key-"))
        try:
            shutil.copy(cluster.munge_key_path, key_dir / "munge.key")
            (key_dir / "munge.key").chmod(0o400)
            mounts = [docker.types.Mount("/etc/munge", str(key_dir), type="bind", read_only=True),
                      docker.types.Mount(str(cluster.state_dir), str(cluster.state_dir), type="bind")]
            for run in range(1, runs + 1):
                node = f"elastic{run}"
                started = time.monotonic()
                container = client.containers.run(  # type: ignore[attr-defined]
                    engine.slurmd_image(), ["-b", "-N", node, "--conf-server", cluster.slurmctld_address],
                    detach=True, network_mode="host", hostname=node, mounts=mounts)
                try:
                    cluster.wait_until(lambda: cluster.node_states().get(node) == "idle", timeout=30,
                                       what=f"{node} registered")
                    samples.append(time.monotonic() - started)
                finally:
                    container.remove(force=True)
                print(f"run {run}: container start -> {node} registered {samples[-1]:.2f} s", flush=True)
        finally:
            shutil.rmtree(key_dir, ignore_errors=True)
    return samples


def sbatch_to_running(runs: int) -> list[float]:
    samples = []
    with Environment(runtime="docker") as env:
        env.slurm.wait_for_first_scheduling_pass()
        for run in range(runs):
            samples.append(one_job(env, run))
            print(f"run {run + 1}: sbatch -N2 -> batch script running {samples[-1]:.2f} s", flush=True)
            env.slurm.wait_until(lambda: powered_down(env), timeout=60, what="nodes powered down")
    return samples


def main(runs: int) -> None:
    import docker

    with engine.engine() as env:
        client = docker.DockerClient(base_url=env["DOCKER_HOST"])
        image_sizes(client)
        registered = registration(client, runs)
        client.close()
        running = sbatch_to_running(runs)
    print(f"container start -> node registered: {summary(registered)}")
    print(f"sbatch -N2 -> batch script running (Docker runtime): {summary(running)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
