"""A Kubernetes API stand-in for tests: an HTTP server that answers like kube-apiserver.

In-process::

    from testenv.kubeapi import KubeApiServer

    with KubeApiServer(auth="auth.yaml") as api:       # or .start() / .stop()
        api.write_kubeconfig(tmp / "kubeconfig")        # admin; pass token= for another user
        api.add_fault(verb="create", resource="pods", code=429, retry_after=1, count=1)
        ...
        api.audit.permissions("system:serviceaccount:slurm:slurm-k8s-bridge")
        api.reset()                                     # fresh cluster, no faults, empty audit

As a process::

    python -m testenv.kubeapi --host 127.0.0.1 --port 0 --state-dir DIR [--auth-file FILE] [--tls]

writes DIR/kubeconfig-admin.yaml and DIR/url, prints "kubeapi listening on URL", stops on
SIGTERM/SIGINT. The auth file format is described in `auth.py`; fault rules in `faults.py`;
the /_testenv HTTP endpoints in `testenv_api.py`.
"""

from .auth import AuthConfig, AuthConfigError, User, load_auth_file
from .faults import FaultRule
from .flowcontrol import FlowControl
from .server import KubeApiServer, NotLoopbackError

__all__ = [
    "AuthConfig", "AuthConfigError", "FaultRule", "FlowControl", "KubeApiServer", "NotLoopbackError", "User",
    "load_auth_file",
]
