"""python -m testenv.scheduler --kubeconfig K [--name default-scheduler] [--gang volcano|coscheduling[=NAME]]..."""

from __future__ import annotations

import argparse
import logging
import sys

from lightkube.core.exceptions import ConfigError

from testenv.runner.kube import API_ERRORS
from testenv.runner.service import run_until_signal

from .gangs import DEFAULT_NAMES
from .scheduler import DEFAULT_NAME, SchedulerService


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m testenv.scheduler", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    parser.add_argument("--name", default=DEFAULT_NAME, help="schedulerName of the pods to schedule")
    parser.add_argument(
        "--gang", action="append", default=[], type=_gang, metavar="KIND[=NAME]",
        help="also schedule pods of this gang scheduler, honouring its PodGroups: volcano (schedulerName "
        "volcano) or coscheduling (scheduler-plugins-scheduler); =NAME for another schedulerName (repeatable)",
    )
    parser.add_argument(
        "--retry-interval", type=float, default=1.0, help="seconds between retries of unschedulable pods"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _gang(text: str) -> tuple[str, str]:
    """KIND[=NAME] -> (schedulerName, kind)."""
    kind, _, name = text.partition("=")
    if kind not in DEFAULT_NAMES:
        raise argparse.ArgumentTypeError(f"unknown gang scheduler {kind!r} (choose from {', '.join(DEFAULT_NAMES)})")
    return name or DEFAULT_NAMES[kind], kind


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        service = SchedulerService(
            args.kubeconfig, name=args.name, gangs=dict(args.gang), retry_interval=args.retry_interval
        )
        run_until_signal(service)
    except API_ERRORS as e:
        print(f"testenv.scheduler: error: Kubernetes API of {args.kubeconfig}: {e}", file=sys.stderr)
        return 1
    except (OSError, ConfigError) as e:
        print(f"testenv.scheduler: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
