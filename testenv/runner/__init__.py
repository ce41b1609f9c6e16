"""A kubelet stand-in: runs the pods bound to virtual nodes as processes on this machine."""

from .backoff import BackoffPolicy
from .kubelet import KubeletService, PodRunner
from .nodes import NodeSpec, load_nodes

__all__ = ["BackoffPolicy", "KubeletService", "NodeSpec", "PodRunner", "load_nodes"]
