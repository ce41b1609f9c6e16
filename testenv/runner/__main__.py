"""python -m testenv.runner --kubeconfig K --nodes NODES.yaml --runtime process|docker --state-dir DIR [...]"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from lightkube.core.exceptions import ConfigError as KubeconfigError

from .backoff import BackoffPolicy
from .config import ConfigError
from .images import ImageTable
from .kube import API_ERRORS
from .kubelet import KubeletService
from .nodes import load_nodes
from .process import ProcessRuntime
from .runtime import Runtime
from .service import run_until_signal


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m testenv.runner", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    parser.add_argument("--nodes", required=True, type=Path, help="NODES.yaml: the virtual nodes to run")
    parser.add_argument("--runtime", choices=["process", "docker"], default="process", help="container runtime")
    parser.add_argument("--mask", type=Path, action="append", default=[],
                        help="process runtime: a host directory containers see empty unless a volume covers it "
                             "(repeatable)")
    parser.add_argument("--image-file", action="append", default=[], metavar="PATH=HOST_FILE",
                        help="process runtime: every container gets a private copy of HOST_FILE at PATH, as an "
                             "image's own file (repeatable), e.g. /etc/passwd without the host's users")
    parser.add_argument("--state-dir", required=True, type=Path, help="directory for pod volumes and logs")
    parser.add_argument("--images", type=Path, help="IMAGES.yaml: image table of the process runtime")
    parser.add_argument("--backoff", type=float, default=10.0, help="initial crash-loop/pull back-off, seconds")
    parser.add_argument("--max-backoff", type=float, default=300.0, help="longest back-off, seconds")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0, help="seconds between node heartbeats")
    parser.add_argument(
        "--on-stop", choices=["notready", "delete"], default="notready", help="what becomes of the nodes at stop"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # A parent such as a Slurm hook may have blocked these: they must reach us to stop cleanly.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    try:
        service = KubeletService(
            args.kubeconfig,
            nodes=load_nodes(args.nodes),
            state_dir=args.state_dir,
            runtime=_runtime(args),
            backoff=BackoffPolicy(initial=args.backoff, maximum=args.max_backoff),
            heartbeat_interval=args.heartbeat_interval,
            on_stop=args.on_stop,
        )
        run_until_signal(service)
    except API_ERRORS as e:
        print(f"testenv.runner: error: Kubernetes API of {args.kubeconfig}: {e}", file=sys.stderr)
        return 1
    except (ConfigError, KubeconfigError, OSError) as e:
        print(f"testenv.runner: error: {e}", file=sys.stderr)
        return 1
    return 0


def _runtime(args: argparse.Namespace) -> Runtime:
    if args.runtime == "docker":
        from .docker import DockerRuntime

        return DockerRuntime()
    files = dict(entry.split("=", 1) for entry in args.image_file)
    return ProcessRuntime(images=ImageTable.load(args.images), state_dir=args.state_dir, masks=tuple(args.mask),
                          image_files={path: Path(source) for path, source in files.items()})


if __name__ == "__main__":
    sys.exit(main())
