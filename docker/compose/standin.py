"""The compose file's Kubernetes stand-in (profile "standin"): the project's API server, its
scheduler and its pod runner with the Docker runtime, so slurmd pods run from the real image as
sibling containers of this one. What CI runs where kind cannot start (no registry for its node
image); it plays the kind service's part:

- the API server on 127.0.0.1 (TLS, a random port), with the repository's rbac/ for the
  bridge's ServiceAccount; the namespace, the munge key Secret (from the shared key) and the
  site-users ConfigMap (RESEARCHER [researcher], RESEARCHER_UID [2000], as slurmctld has them)
  applied;
- the bridge's kubeconfig and the address pods reach slurmctld at (127.0.0.1: every container
  uses the host's network) written to $KUBE_DIR, which slurmctld waits for;
- at SIGTERM (compose down/stop): the runner removes its pods' containers, then everything stops
  and $KUBE_DIR is emptied.

Environment: STATE_DIR (required: a host path bound at the same path, because the Docker
engine binds the pods' volume directories from the host), KUBE_DIR [/etc/slurm-k8s-bridge/kube],
DOCKER_HOST [unix:///var/run/docker.sock], NODE_COUNT [2] virtual Kubernetes nodes and Slurm
nodes, SLURMD_BASE_PORT [6821]: all pods share the host's network, so node i listens on base+i-1.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RBAC = HERE / "rbac"
NAMESPACE = "slurm"
BRIDGE_USER = f"system:serviceaccount:{NAMESPACE}:slurm-k8s-bridge"
stopping = threading.Event()


def log(message: str) -> None:
    print(f"standin: {message}", flush=True)


def spawn(*argv: str) -> subprocess.Popen[bytes]:
    level = ["--log-level", os.environ.get("LOG_LEVEL", "WARNING")] if argv[0] != "testenv.kubeapi" else []
    return subprocess.Popen([sys.executable, "-m", *argv, *level], stdin=subprocess.DEVNULL)


def wait_file(path: Path, children: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for child in children:
            if child.poll() is not None:
                raise SystemExit(f"standin: {child.args[2]} exited with {child.returncode}")
        if stopping.is_set() or time.monotonic() > deadline:
            raise SystemExit(f"standin: no {path} after {timeout:.0f} s")
        time.sleep(0.1)


def apply_objects(admin_kubeconfig: Path, key: bytes) -> None:
    import lightkube
    from lightkube import ApiError, codecs

    client = lightkube.Client(lightkube.KubeConfig.from_file(str(admin_kubeconfig)), namespace=NAMESPACE)
    objects = [obj for path in sorted(RBAC.glob("*.yaml"))
               if path.name not in ("kustomization.yaml", "munge-key-secret.example.yaml")
               for obj in codecs.load_all_yaml(path.read_text())
               if obj.kind not in ("Role", "RoleBinding")]  # the stand-in takes these from its auth file
    objects.append(codecs.from_dict({"apiVersion": "v1", "kind": "Secret",
                                     "metadata": {"name": "munge-key", "namespace": NAMESPACE},
                                     "data": {"munge.key": base64.b64encode(key).decode()}}))
    name, uid = os.environ.get("RESEARCHER", "researcher"), os.environ.get("RESEARCHER_UID", "2000")
    objects.append(codecs.from_dict({"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "site-users", "namespace": NAMESPACE},
                                     "data": {"passwd": f"{name}:x:{uid}:{uid}::/home/{name}:/bin/bash\n",
                                              "group": f"{name}:x:{uid}:\n"}}))
    for obj in objects:
        try:
            client.create(obj)
        except ApiError as e:
            if e.status.code != 409:
                raise
    client.close()


def main() -> int:
    state = Path(os.environ["STATE_DIR"])
    kube_dir = Path(os.environ.get("KUBE_DIR", "/etc/slurm-k8s-bridge/kube"))
    key_file = Path("/etc/munge/munge.key")
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    shutil.rmtree(state, ignore_errors=True)  # a previous run's, if it was killed
    (state / "kube").mkdir(parents=True)
    kube_dir.mkdir(parents=True, exist_ok=True)
    for name in ("kubeconfig", "controller-address", "pod-network"):
        (kube_dir / name).unlink(missing_ok=True)

    admin_token, bridge_token = os.urandom(12).hex(), os.urandom(12).hex()
    auth = {"users": [{"name": "testenv-admin", "token": admin_token, "admin": True},
                      {"name": BRIDGE_USER, "token": bridge_token}], "rbac": [str(RBAC)]}
    (state / "kube" / "auth.yaml").write_text(yaml.safe_dump(auth))
    count = int(os.environ.get("NODE_COUNT", "2"))
    nodes = [{"name": f"worker-{i}", "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"}}
             for i in range(1, count + 1)]
    (state / "nodes.yaml").write_text(yaml.safe_dump({"nodes": nodes}))

    children: list[subprocess.Popen[bytes]] = []
    try:
        children.append(spawn("testenv.kubeapi", "--host", "127.0.0.1", "--port", "0", "--tls",
                              "--state-dir", str(state / "kube"), "--auth-file", str(state / "kube" / "auth.yaml"),
                              "--admin-token", admin_token))
        admin = state / "kube" / "kubeconfig-admin.yaml"
        wait_file(admin, children)
        log("waiting for the munge key slurmctld makes")
        wait_file(key_file, children, timeout=600)
        children.append(spawn("testenv.scheduler", "--kubeconfig", str(admin)))
        children.append(spawn("testenv.runner", "--kubeconfig", str(admin), "--nodes", str(state / "nodes.yaml"),
                              "--runtime", "docker", "--state-dir", str(state / "runner"),
                              "--backoff", "1", "--max-backoff", "10", "--on-stop", "delete"))
        apply_objects(admin, key_file.read_bytes())
        config = yaml.safe_load(admin.read_text())
        for user in config["users"]:
            user["user"] = {"token": bridge_token}
        bridge = kube_dir / "kubeconfig.new"
        bridge.write_text(yaml.safe_dump(config))
        bridge.chmod(0o600)
        bridge.rename(kube_dir / "kubeconfig")
        base = int(os.environ.get("SLURMD_BASE_PORT", "6821"))
        (kube_dir / "pod-network").write_text(f"SLURMD_PORT={base}-{base + count - 1}\nPOD_HOST_NETWORK=false\n")
        (kube_dir / "controller-address").write_text("127.0.0.1\n")
        log(f"ready: API {(state / 'kube' / 'url').read_text().strip()}, {count} nodes, slurmd pods run in Docker")
        while not stopping.wait(1):
            for child in children:
                if child.poll() is not None:
                    log(f"{child.args[2]} exited with {child.returncode}")
                    return 1
        return 0
    finally:
        log("stopping: the runner removes the pods' containers")
        for name in ("controller-address", "pod-network", "kubeconfig"):
            (kube_dir / name).unlink(missing_ok=True)
        for child in reversed(children):  # runner, scheduler, API
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
