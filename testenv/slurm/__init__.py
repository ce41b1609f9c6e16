"""The Slurm side of the one-machine test environment: a real controller with CLOUD nodes.

    with SlurmCluster(hooks=Hooks(resume=..., suspend=...)) as cluster:
        cluster.run("sbatch", "-N2", "--wrap", "hostname")
"""

from testenv.slurm.cluster import SlurmCluster, SlurmClusterError, free_ports
from testenv.slurm.config import (
    CALLER_KEYS, CLOUD_NODES_EXAMPLE, PARTITION, SNIPPET, ClusterConfig, Hooks, Layout,
    NodeGroup, Timeouts, read_node_groups, read_settings, render_gres_conf, render_slurm_conf,
)

__all__ = [
    "CALLER_KEYS", "CLOUD_NODES_EXAMPLE", "PARTITION", "SNIPPET", "ClusterConfig", "Hooks",
    "Layout", "NodeGroup", "SlurmCluster", "SlurmClusterError", "Timeouts", "free_ports",
    "read_node_groups", "read_settings", "render_gres_conf", "render_slurm_conf",
]
