"""slurm-k8s-bridge: Slurm power-saving hooks that run CLOUD nodes as slurmd pods in Kubernetes.

The package reads as the flow of one hook:
hostlist in (:mod:`bridge.hostlist`, :mod:`bridge.resumefile`) → Slurm facts (:mod:`bridge.slurm`)
→ nodeset match (:meth:`bridge.config.Config.nodeset_for`) → render (:mod:`bridge.render`) → Kubernetes calls
(:mod:`bridge.kube`) → Slurm state updates → log line out (:mod:`bridge.log`).
The flows themselves live in :mod:`bridge.resume`, :mod:`bridge.suspend`, :mod:`bridge.failure`
(all-or-nothing release) and :mod:`bridge.follow` (after the hook returns); the console scripts
in :mod:`bridge.hooks` (Slurm's programs), :mod:`bridge.prolog` and :mod:`bridge.cli` (the admin CLI).
"""

NAME = "slurm-k8s-bridge"
__version__ = "0.1.0"
