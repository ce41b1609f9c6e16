"""The site the test environment stands in for: researchers' accounts and their filesystem.

A real HPC site has users in LDAP (or its passwd files) on every login and compute host, and
home directories on NFS mounted at the same path everywhere. Here:

- **Users** ``alice`` (uid 2001) and ``bob`` (uid 2002), each with a private group of the same
  id, both in the shared group ``proj`` (gid 2100), are created on this host (the submit host)
  with fixed ids, once; they stay, as a site's accounts do, and other environments on the host
  share them.
- **The site filesystem** is ``/srv/k8s-bridge-site`` (the kernel here has no NFS client): homes
  under ``home/`` (mode 0750, owned by their user), the group's ``home/proj`` (2770, group
  ``proj``), and ``unmounted/`` for the user's
  directories that no nodeset mounts. Pods see it only where a nodeset declares it as a volume.
- **The users' data for the pods**: ``passwd`` and ``group`` lines for the ``site-users``
  ConfigMap, made as a site admin would (``getent`` filtered by the users' id range).
- **The image's own accounts** for the process runtime: this host's ``/etc/passwd`` and
  ``/etc/group`` without the site's users, which its containers get in place of the host's.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/srv/k8s-bridge-site")
HOME = ROOT / "home"
PROJECT = HOME / "proj"
"""The group ``proj``'s shared directory (mode 2770), beside the homes."""
UNMOUNTED = ROOT / "unmounted"
"""Directories of the users on the submit host that no nodeset mounts (jobs from there fail)."""
USERS_CONFIG_MAP = "site-users"
ID_RANGE = range(2000, 3000)
"""The site's users and groups (a site's LDAP range); the admin's ``getent`` filter."""
HUMAN_IDS = range(1000, 60000)
"""Ids an image never carries (Debian's range for people): left out of the image's files."""


@dataclass(frozen=True)
class User:
    name: str
    uid: int

    @property
    def home(self) -> Path:
        return HOME / self.name


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: tuple[str, ...] = ()


ALICE = User("alice", 2001)
BOB = User("bob", 2002)
USERS = (ALICE, BOB)
PROJ = Group("proj", 2100, ("alice", "bob"))
GROUPS = (Group("alice", 2001), Group("bob", 2002), PROJ)


class SiteError(RuntimeError):
    """The site cannot be set up (e.g. a name taken with another id)."""


def ensure() -> None:
    """Create the users, groups and directories that are missing; check those that exist.
    Safe when several environments on this host do it at once."""
    for group in GROUPS:
        _ensure_group(group)
    for user in USERS:
        _ensure_user(user)
    for directory in (ROOT, HOME, UNMOUNTED):
        directory.mkdir(mode=0o755, exist_ok=True)
    PROJECT.mkdir(exist_ok=True)
    os.chown(PROJECT, 0, PROJ.gid)
    PROJECT.chmod(0o2770)
    for user in USERS:
        for home in (user.home, UNMOUNTED / user.name):
            home.mkdir(mode=0o750, exist_ok=True)
            os.chown(home, user.uid, user.uid)
            home.chmod(0o750)


def users_data() -> dict[str, str]:
    """The ConfigMap's ``passwd`` and ``group``, as an admin makes them:
    ``getent passwd | awk -F: '$3 >= 2000 && $3 < 3000'`` and the same for groups."""
    return {"passwd": _getent("passwd"), "group": _getent("group")}


def write_image_files(directory: Path) -> dict[str, Path]:
    """This host's passwd and group without people (uids/gids 1000-59999): what an image has."""
    files = {}
    for name in ("passwd", "group"):
        lines = Path(f"/etc/{name}").read_text().splitlines()
        kept = [line for line in lines if not _is_person(line)]
        path = directory / name
        path.write_text("\n".join(kept) + "\n")
        files[f"/etc/{name}"] = path
    return files


def _is_person(line: str) -> bool:
    fields = line.split(":")
    return len(fields) > 2 and fields[2].isdigit() and int(fields[2]) in HUMAN_IDS


def _getent(database: str) -> str:
    out = subprocess.run(["getent", database], capture_output=True, text=True, check=True).stdout
    return "".join(line + "\n" for line in out.splitlines()
                   if len(line.split(":")) > 2 and line.split(":")[2].isdigit()
                   and int(line.split(":")[2]) in ID_RANGE)


def _ensure_group(group: Group) -> None:
    existing = _group(group.name)
    if existing is None:
        _run(["groupadd", "--gid", str(group.gid), group.name], f"group {group.name}")
        existing = _group(group.name)
    if existing is None or existing.gr_gid != group.gid:
        raise SiteError(f"group {group.name} exists with gid {existing and existing.gr_gid}, expected {group.gid}")


def _ensure_user(user: User) -> None:
    existing = _user(user.name)
    groups = ",".join(g.name for g in GROUPS if user.name in g.members)
    if existing is None:
        _run(["useradd", "--uid", str(user.uid), "--gid", str(user.uid), "--groups", groups, "--no-create-home",
              "--home-dir", str(user.home), "--shell", "/bin/bash", "--comment", user.name.title(), user.name],
             f"user {user.name}")
        existing = _user(user.name)
    if existing is None or existing.pw_uid != user.uid:
        raise SiteError(f"user {user.name} exists with uid {existing and existing.pw_uid}, expected {user.uid}")
    missing = [g.name for g in GROUPS if user.name in g.members and user.name not in grp.getgrnam(g.name).gr_mem]
    if missing:
        _run(["usermod", "--append", "--groups", ",".join(missing), user.name], f"groups of {user.name}")


def _run(argv: list[str], what: str) -> None:
    for attempt in range(20):
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        # exit 9: the name was taken meanwhile (another environment created it): checked after.
        if result.returncode in (0, 9):
            return
        if "lock" not in result.stderr:  # another environment holds /etc/passwd's lock: retry
            break
        time.sleep(0.1 * (attempt + 1))
    raise SiteError(f"cannot create {what}: {result.stderr.strip()}")


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _group(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def run_as(user: User, cluster: object, *argv: str, cwd: Path | None = None,
           timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """A Slurm client command typed by ``user`` on the submit host (``runuser``), from ``cwd``
    (default: the user's home), against the test cluster (``cluster.env``: SLURM_CONF; None:
    a plain command). A cluster whose controller is the submit host (``cluster.run_as``, a
    containerised release) runs it there, where the site is mounted at the same paths."""
    if hasattr(cluster, "run_as"):
        return getattr(cluster, "run_as")(user.name, *argv, cwd=cwd or user.home, timeout=timeout)
    # A login's environment, not the test's: sbatch hands it to the job (TMPDIR and all).
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(user.home), "USER": user.name, "LOGNAME": user.name,
           "SHELL": "/bin/bash", "LANG": "C.UTF-8"}
    if cluster is not None:
        env["SLURM_CONF"] = getattr(cluster, "env")["SLURM_CONF"]
    return subprocess.run(["/usr/sbin/runuser", "-u", user.name, "--", *argv], env=env, cwd=cwd or user.home,
                          capture_output=True, text=True, timeout=timeout, check=False)
