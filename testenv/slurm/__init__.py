"""The Slurm side of the one-machine test environment: a real controller with CLOUD nodes.

    hooks = Hooks(resume=venv / "bin/slurm-k8s-resume", suspend=..., resume_fail=...,
                  prolog_slurmctld=venv / "bin/slurm-k8s-prolog")
    with SlurmCluster(node_groups=(NodeGroup(count=4, cpus=2),), hooks=hooks) as cluster:
        cluster.run("sbatch", "-N2", "--wrap", "hostname")

What a test environment built on it should know (all measured on Slurm 22.05.8 here):
- slurm.conf is rendered from slurm/slurm.conf.power-saving, the snippet sites deploy; only
  the hook paths and SuspendTime/ResumeTimeout/SuspendTimeout come from the caller.
- Hooks without PATH: give absolute paths (a venv's console scripts are). Without both
  ResumeProgram and SuspendProgram slurmctld disables power saving ("NULL SuspendProgram").
- PrologSlurmctld runs with an environment of SLURM_JOB_* only, no SLURM_CONF, so its
  scontrol would read /etc/slurm/slurm.conf. The cluster runs the given prolog through a
  wrapper that sets SLURM_CONF, as a site's default config path would.
- Jobs submitted in the first 3 s after start are all scheduled at 3 s (22.05 reads
  batch_sched_delay in its first scheduling pass); wait_for_first_scheduling_pass() before
  measuring latency. After it: sbatch -N2 to RUNNING in ~1.5 s with hosthooks.
- All nodes share this host: node i listens on node_ports[name] (slurm.conf Port=), and is
  started as `slurmd -N <name>`. Its SlurmdSpoolDir and log are per node (slurmd_spool_dir,
  slurmd_log). GPU nodes get fake /dev/nvidiaN character devices in the state dir; with
  gpu_files=POD_GPU_FILES gres.conf names /dev/slurm-gpuN instead, the links the slurmd
  entrypoint makes in a pod to the devices the runner's device plugin gave it.
- A slurmd started the way a pod starts it (configless, through docker/slurmd/entrypoint.sh)
  needs a private /run for its munged: see hostnode.py, and hosthooks.py for hooks that
  start nodes on this host without Kubernetes.
- stop() ends every process whose command line or environment names the state dir (hooks,
  nodes, jobs), then removes it.
"""

from testenv.slurm.cluster import SlurmCluster, SlurmClusterError, free_ports
from testenv.slurm.config import (
    CALLER_KEYS, CLOUD_NODES_EXAMPLE, COMMON_SETTINGS, PARTITION, POD_GPU_FILES, SNIPPET, ClusterConfig, Hooks, Layout,
    NodeGroup, Timeouts, read_node_groups, read_settings, render_gres_conf, render_slurm_conf,
)

__all__ = [
    "CALLER_KEYS", "CLOUD_NODES_EXAMPLE", "COMMON_SETTINGS", "PARTITION", "POD_GPU_FILES", "SNIPPET", "ClusterConfig", "Hooks",
    "Layout", "NodeGroup", "SlurmCluster", "SlurmClusterError", "Timeouts", "free_ports",
    "read_node_groups", "read_settings", "render_gres_conf", "render_slurm_conf",
]
