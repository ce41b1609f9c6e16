"""A Kubernetes API stand-in for tests: an HTTP server that answers like kube-apiserver.

Start it in-process::

    from testenv.kubeapi import KubeApiServer

    with KubeApiServer() as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        ...

or as a process: ``python -m testenv.kubeapi --port 0 --state-dir DIR``.
"""

from .auth import AuthConfig, AuthConfigError, User, load_auth_file
from .faults import FaultRule
from .server import KubeApiServer, NotLoopbackError

__all__ = ["AuthConfig", "AuthConfigError", "FaultRule", "KubeApiServer", "NotLoopbackError", "User", "load_auth_file"]
