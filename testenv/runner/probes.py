"""Container probes (startup, readiness, liveness) as the kubelet runs them.

exec runs in the container through the runtime; tcpSocket and httpGet go to 127.0.0.1 (the
process runtime shares the host network), or to `host` when the probe names one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lightkube.models.core_v1 import Container, Probe

from .runtime import ContainerHandle, Runtime

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    output: str = ""


def _port(container: Container, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.ports or []:
        if declared.name == port:
            return declared.containerPort
    raise ValueError(f"no container port named {port!r}")


async def _tcp(host: str, port: int, timeout: float) -> ProbeResult:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as e:
        return ProbeResult(False, f"dial tcp {host}:{port}: {e or 'i/o timeout'}")
    writer.close()
    return ProbeResult(True)


async def _http(host: str, port: int, path: str, timeout: float) -> ProbeResult:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.30\r\nConnection: close\r\n\r\n".encode()
        )
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        writer.close()
    except (TimeoutError, OSError) as e:
        return ProbeResult(False, f'Get "http://{host}:{port}{path}": {e or "context deadline exceeded"}')
    parts = status_line.decode(errors="replace").split()
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if 200 <= code < 400:
        return ProbeResult(True)
    return ProbeResult(False, f"HTTP probe failed with statuscode: {code}")


async def probe_once(probe: Probe, container: Container, runtime: Runtime, handle: ContainerHandle) -> ProbeResult:
    timeout = float(probe.timeoutSeconds or 1)
    if probe.exec is not None:
        result = await runtime.exec_in_container(handle, list(probe.exec.command or []), env={}, timeout=timeout)
        if result.timed_out:
            return ProbeResult(False, f"command timed out after {timeout:g}s")
        return ProbeResult(result.exit_code == 0, result.output.strip())
    if probe.tcpSocket is not None:
        return await _tcp(probe.tcpSocket.host or HOST, _port(container, probe.tcpSocket.port), timeout)
    if probe.httpGet is not None:
        get = probe.httpGet
        return await _http(get.host or HOST, _port(container, get.port), get.path or "/", timeout)
    return ProbeResult(False, "probe type not supported by the test environment")


async def run_probe(
    probe: Probe,
    container: Container,
    runtime: Runtime,
    handle: ContainerHandle,
    on_change: Callable[[bool, str], Awaitable[None]],
) -> None:
    """Probe every periodSeconds; call on_change when the thresholds flip the result."""
    await asyncio.sleep(probe.initialDelaySeconds or 0)
    success_threshold = probe.successThreshold or 1
    failure_threshold = probe.failureThreshold or 3
    successes = failures = 0
    current: bool | None = None
    while True:
        result = await probe_once(probe, container, runtime, handle)
        successes, failures = (successes + 1, 0) if result.ok else (0, failures + 1)
        if result.ok and successes >= success_threshold and current is not True:
            current = True
            await on_change(True, result.output)
        elif not result.ok and failures >= failure_threshold and current is not False:
            current = False
            await on_change(False, result.output)
        await asyncio.sleep(probe.periodSeconds or 10)
