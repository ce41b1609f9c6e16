"""Kubeconfig files pointing at the stand-in, one per bearer token."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml


def kubeconfig(
    server_url: str,
    token: str,
    *,
    user: str = "admin",
    namespace: str = "default",
    ca_pem: bytes | None = None,
) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": user, "namespace": namespace}}],
        "current-context": "testenv",
        "preferences": {},
    }


def write_kubeconfig(path: str | Path, config: dict[str, Any]) -> Path:
    """Write with owner-only permissions: it holds a bearer token."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
