"""Bearer-token authentication and RBAC authorization.

The auth file maps tokens to users, and users to either `admin: true` or
RBAC PolicyRules, written inline or taken from real Role/ClusterRole
manifests (and optionally their bindings), so the repository's `rbac/`
files can be proven sufficient and minimal as they are. Rule matching
follows the RBAC authorizer: verbs, apiGroups, resources including
`resource/subresource` and `*/subresource`, resourceNames, nonResourceURLs.

Auth file (YAML)::

    users:
      - name: system:serviceaccount:slurm:slurm-k8s-bridge
        token: bridge-token
        groups: [ops]                    # optional, beyond the implied ones
        rules:                           # inline PolicyRules
          - apiGroups: [""]
            resources: [pods]
            verbs: [create, list, delete]
            namespaces: [slurm]          # optional: only in these namespaces
        roles:                           # rules of Role/ClusterRole manifests
          - file: ../rbac/role.yaml      # relative to the auth file; a directory works too
            name: slurm-k8s-bridge       # optional: one role of the file
            namespace: slurm             # optional: where it applies
      - name: admin
        token: admin-token
        admin: true
    rbac: [../rbac]                      # optional: files or directories of roles and
                                         # bindings, granted to the bindings' subjects
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import errors as e
from .gvk import GroupResource
from .jsonobj import JsonObject
from .requestinfo import RequestInfo

ANONYMOUS_PATHS = ("/healthz", "/livez", "/readyz", "/version")
DISCOVERY_PREFIXES = ("/api", "/apis", "/openapi", "/version", "/healthz", "/livez", "/readyz")


class AuthConfigError(ValueError):
    """The auth file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    admin: bool = False


@dataclass(frozen=True)
class Grant:
    """A PolicyRule and where it applies: a namespace, or everywhere (None)."""

    rule: JsonObject
    namespace: str | None = None


ADMIN = User("kubernetes-admin", ("system:masters", "system:authenticated"), admin=True)


def implied_groups(name: str) -> tuple[str, ...]:
    groups = ["system:authenticated"]
    if name.startswith("system:serviceaccount:"):
        namespace = name.split(":")[2]
        groups += ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    return tuple(groups)


@dataclass
class AuthConfig:
    """Who a token is, and what each user and group may do. `open` means no auth file: all admin."""

    tokens: dict[str, User] = field(default_factory=dict)
    grants: dict[str, list[Grant]] = field(default_factory=dict)  # by user name or "group:<name>"
    open: bool = True

    def add_token(self, token: str, user: User) -> None:
        self.tokens[token] = user

    def authenticate(self, header: str | None) -> User | None:
        """The user for an Authorization header, or None (then the request is a 401)."""
        if self.open:
            return ADMIN
        if not header or not header.startswith("Bearer "):
            return None
        token = header[len("Bearer ") :].strip()
        for known, user in self.tokens.items():
            if hmac.compare_digest(known, token):
                return user
        return None

    def is_admin_name(self, name: str) -> bool:
        return any(user.admin for user in self.tokens.values() if user.name == name)

    def allows(self, user: User, info: RequestInfo) -> bool:
        if self.open or user.admin or "system:masters" in user.groups:
            return True
        if info.is_resource and info.group == "authorization.k8s.io" and info.resource.startswith("self"):
            return info.verb == "create"  # everyone may ask what they may do (system:basic-user)
        if not info.is_resource and info.path.startswith(DISCOVERY_PREFIXES) and not info.path.startswith("/_testenv"):
            return info.verb == "get"
        keys = [user.name, *(f"group:{g}" for g in user.groups)]
        return any(_grant_allows(g, info) for key in keys for g in self.grants.get(key, []))


def _grant_allows(grant: Grant, info: RequestInfo) -> bool:
    rule = grant.rule
    verbs = rule.get("verbs") or []
    if "*" not in verbs and info.verb not in verbs:
        return False
    if not info.is_resource:
        return any(
            u == "*" or u == info.path or (u.endswith("*") and info.path.startswith(u[:-1]))
            for u in rule.get("nonResourceURLs") or []
        )
    if grant.namespace is not None and grant.namespace != info.namespace:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and info.group not in groups:
        return False
    if not _resource_matches(rule.get("resources") or [], info):
        return False
    names = rule.get("resourceNames") or []
    return not names or info.name in names


def _resource_matches(resources: list[str], info: RequestInfo) -> bool:
    wanted = info.resource_with_sub
    for resource in resources:
        if resource in ("*", wanted):
            return True
        if info.subresource and resource == f"*/{info.subresource}":
            return True
    return False


def forbidden_error(user: User, info: RequestInfo) -> e.ApiError:
    """403 worded like the real authorizer's refusal."""
    if not info.is_resource:
        return e.ApiError(
            e.status_body(403, "Forbidden", f'forbidden: User "{user.name}" cannot {info.verb} path "{info.path}"', {})
        )
    where = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    cause = (
        f'User "{user.name}" cannot {info.verb} resource "{info.resource_with_sub}" in API group "{info.group}" {where}'
    )
    return e.forbidden(GroupResource(info.group, info.resource), info.name, cause)


# --- loading ------------------------------------------------------------------------------------


def load_auth_file(path: str | Path) -> AuthConfig:
    """Parse an auth file; raises AuthConfigError naming the file and the offending entry."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise AuthConfigError(f"{path}: cannot read: {err}") from err
    config = AuthConfig(open=False)
    for i, entry in enumerate(data.get("users") or []):
        where = f"{path}: users[{i}]"
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("token"):
            raise AuthConfigError(f"{where}: expected a mapping with 'name' and 'token'")
        user = User(
            entry["name"], implied_groups(entry["name"]) + tuple(entry.get("groups") or ()), bool(entry.get("admin"))
        )
        config.add_token(str(entry["token"]), user)
        grants = config.grants.setdefault(user.name, [])
        for j, rule in enumerate(entry.get("rules") or []):
            grants += _inline_grants(rule, f"{where}.rules[{j}]")
        for j, ref in enumerate(entry.get("roles") or []):
            grants += _role_grants(
                path.parent / ref["file"], ref.get("name"), ref.get("namespace"), f"{where}.roles[{j}]"
            )
    if data.get("rbac"):
        _bind_manifests(config, [path.parent / manifest for manifest in data["rbac"]])
    return config


def _inline_grants(rule: Any, where: str) -> list[Grant]:
    if not isinstance(rule, dict) or not rule.get("verbs"):
        raise AuthConfigError(f"{where}: a rule needs 'verbs' (and 'apiGroups'/'resources' or 'nonResourceURLs')")
    namespaces = rule.get("namespaces")
    policy = {k: v for k, v in rule.items() if k != "namespaces"}
    if not namespaces:
        return [Grant(policy, None)]
    return [Grant(policy, ns) for ns in namespaces]


def _documents(path: Path) -> list[JsonObject]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as err:
        raise AuthConfigError(f"{path}: cannot read: {err}") from err


def _role_grants(path: Path, name: str | None, namespace: str | None, where: str) -> list[Grant]:
    roles = [d for d in _manifest_documents([path]) if d.get("kind") in ("Role", "ClusterRole")]
    if name:
        roles = [r for r in roles if r.get("metadata", {}).get("name") == name]
    if not roles:
        raise AuthConfigError(f"{where}: no Role or ClusterRole{' named ' + name if name else ''} in {path}")
    grants = []
    for role in roles:
        scope = namespace or (role.get("metadata", {}).get("namespace") if role["kind"] == "Role" else None)
        grants += [Grant(rule, scope) for rule in role.get("rules") or []]
    return grants


def _subject_key(subject: JsonObject, binding_namespace: str) -> str:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        return f"system:serviceaccount:{subject.get('namespace') or binding_namespace}:{subject['name']}"
    if kind == "Group":
        return f"group:{subject['name']}"
    return str(subject["name"])


def _manifest_documents(paths: list[Path]) -> list[JsonObject]:
    """Every document of the given files, and of the *.yaml/*.yml files of the given directories."""
    docs: list[JsonObject] = []
    for path in paths:
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        for file in files:
            docs += _documents(file)
    return docs


def _role_key(kind: str, namespace: str, name: str) -> tuple[str, str, str]:
    return (kind, namespace if kind == "Role" else "", name)


def _bind_manifests(config: AuthConfig, paths: list[Path]) -> None:
    """Grant each binding's subjects its role's rules, as the RBAC authorizer would."""
    docs = _manifest_documents(paths)
    roles = {
        _role_key(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
        for d in docs
        if d.get("kind") in ("Role", "ClusterRole")
    }
    for binding in (d for d in docs if d.get("kind") in ("RoleBinding", "ClusterRoleBinding")):
        ref = binding.get("roleRef") or {}
        namespace = binding["metadata"].get("namespace", "")
        role = roles.get(_role_key(ref.get("kind", ""), namespace, ref.get("name", "")))
        if role is None:
            where = ", ".join(str(p) for p in paths)
            raise AuthConfigError(
                f"{where}: {binding['kind']} {binding['metadata']['name']} refers to "
                f"{ref.get('kind')} {ref.get('name')}, which none of these files defines"
            )
        scope = namespace if binding["kind"] == "RoleBinding" else None
        for subject in binding.get("subjects") or []:
            key = _subject_key(subject, namespace)
            config.grants.setdefault(key, []).extend(Grant(rule, scope) for rule in role.get("rules") or [])
