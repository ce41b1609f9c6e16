"""Run the stand-in as a process.

    python -m testenv.kubeapi --host 127.0.0.1 --port 0 --state-dir DIR [--auth-file FILE] [--tls]

When listening it writes DIR/kubeconfig-admin.yaml and DIR/url, then prints
one line "kubeapi listening on URL". SIGTERM or SIGINT stop it cleanly.
Expected failures print "kubeapi: error: ..." and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .auth import AuthConfigError
from .flowcontrol import FlowControl
from .server import KubeApiServer, NotLoopbackError


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m testenv.kubeapi", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, required=True, help="where kubeconfig-admin.yaml and url go")
    parser.add_argument("--auth-file", type=Path, help="tokens, users and RBAC rules (absent: everyone is admin)")
    parser.add_argument("--admin-token", help="token of the admin kubeconfig (random by default)")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a throw-away CA")
    parser.add_argument("--watch-timeout", type=float, default=300.0, help="seconds before idle watches end")
    parser.add_argument("--seats", type=int, help="API Priority and Fairness: concurrent requests (default: no limit)")
    parser.add_argument("--queue-length", type=int, default=50, help="with --seats: requests a user may have waiting")
    parser.add_argument("--queue-wait", type=float, default=15.0, help="with --seats: seconds in a queue before a 429")
    parser.add_argument("--request-latency", type=float, default=0.0,
                        help="with --seats: seconds each request holds its seat (a server's storage round trip)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        server = KubeApiServer(
            args.host,
            args.port,
            auth=args.auth_file,
            admin_token=args.admin_token,
            tls=args.tls,
            watch_timeout=args.watch_timeout,
            flow_control=FlowControl(args.seats, args.queue_length, args.queue_wait, args.request_latency)
            if args.seats else None,
        )
        server.start()
    except (NotLoopbackError, AuthConfigError, OSError) as err:
        print(f"kubeapi: error: {err}", file=sys.stderr)
        return 2
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        server.write_kubeconfig(args.state_dir / "kubeconfig-admin.yaml")
        # Atomically: a starter waits for the file to exist, then reads it.
        (args.state_dir / "url.tmp").write_text(server.url + "\n")
        (args.state_dir / "url.tmp").rename(args.state_dir / "url")
        if server.ca_pem:
            (args.state_dir / "ca.crt").write_bytes(server.ca_pem)
        print(f"kubeapi listening on {server.url}", flush=True)
        stopping.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
