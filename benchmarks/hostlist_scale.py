"""Hostlist expressions at a large site's sizes: expand, fold and membership, and how early
an absurd size is refused. Prints seconds per case; no daemon needed.

    PYTHONPATH=. .venv/bin/python benchmarks/hostlist_scale.py
"""

from __future__ import annotations

import time

from bridge import hostlist
from bridge.errors import UsageError


def timed(label: str, call) -> object:
    start = time.perf_counter()
    result = call()
    print(f"{label:58s} {time.perf_counter() - start:8.4f} s")
    return result


def main() -> None:
    for size in (10**3, 10**4, 5 * 10**4):
        hostlist._parse.cache_clear()
        names = timed(f"expand n[1-{size}]", lambda: hostlist.expand(f"n[1-{size}]"))
        scattered = ",".join(f"n{2 * i}" for i in range(size))
        hostlist._parse.cache_clear()
        timed(f"expand {size} comma-separated names", lambda: hostlist.expand(scattered))
        timed(f"fold {size} names", lambda: hostlist.fold(names))
    hostlist._parse.cache_clear()
    names = timed("expand n[1-50000],m[1-50000] (10^5)", lambda: hostlist.expand("n[1-50000],m[1-50000]"))
    timed("fold 10^5 names", lambda: hostlist.fold(names))
    scattered = ",".join(f"n{2 * i}" for i in range(10**5))
    hostlist._parse.cache_clear()
    timed("expand 10^5 comma-separated names", lambda: hostlist.expand(scattered))
    hostlist._parse.cache_clear()
    timed("expand n[0-99][000-999] (10^5, two groups)", lambda: hostlist.expand("n[0-99][000-999]"))
    timed("contains(gpu[00001-65536], gpu65536)", lambda: hostlist.contains("gpu[00001-65536]", "gpu65536"))
    for label, expression in (("n[0-999][000-999] (10^6)", "n[0-999][000-999]"),
                              ("10^6 comma-separated names", ",".join(f"n{i}" for i in range(10**6)))):
        hostlist._parse.cache_clear()
        start = time.perf_counter()
        try:
            hostlist.expand(expression)
        except UsageError:
            print(f"{'refuse ' + label:58s} {time.perf_counter() - start:8.4f} s")
        else:
            raise SystemExit(f"{label} was expanded, expected a refusal")


if __name__ == "__main__":
    main()
