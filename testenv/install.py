"""The bridge installed the way the README tells an admin to, for slurmctld to run as its hooks.

A non-editable install (a wheel built from this checkout) into a venv made by the system's
Python (``/usr/bin/python3``), under ``/opt`` where SlurmUser can reach the interpreter: the
end-to-end tests then run what a site runs, and a file the package needs at run time that the
wheel lacks fails them. The developer's ``.venv`` (editable, the test tools) stays as it is.

One install per checkout (several worktrees may share a machine), refreshed whenever the
package's sources change, so a test never runs yesterday's hooks:

    python -m testenv.install          # what testenv/setup.sh runs; prints the bin directory
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = Path("/opt/slurm-k8s-bridge-ci")
SYSTEM_PYTHON = Path("/usr/bin/python3")
EXTRAS = "check"
"""`slurm-k8s-bridge check` validates templates; an admin who runs it installs this extra too."""
_SOURCES = ("pyproject.toml", "README.md", "bridge", "pod-templates")


class InstallError(RuntimeError):
    """The install could not be made; the message carries pip's last lines."""


def venv_dir(repo: Path = REPO) -> Path:
    """This checkout's install: the same path on every run, a different one per checkout."""
    tag = hashlib.sha256(str(repo).encode()).hexdigest()[:8]
    return ROOT / f"{repo.name}-{tag}"


def bin_dir(repo: Path = REPO) -> Path:
    return venv_dir(repo) / "bin"


def source_digest(repo: Path = REPO) -> str:
    """What the wheel is built from: any change here means a new install."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = repo / name
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(repo)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def ensure(repo: Path = REPO) -> Path:
    """Make or refresh the install; returns its bin directory. Cheap when up to date."""
    venv = venv_dir(repo)
    ROOT.mkdir(parents=True, exist_ok=True)
    ROOT.chmod(0o755)
    with open(ROOT / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs of one checkout install once
        wanted = source_digest(repo)
        stamp = venv / ".source-digest"
        if stamp.is_file() and stamp.read_text() == wanted and (venv / "bin" / "python").exists():
            return venv / "bin"
        if not (venv / "bin" / "python").exists():
            _run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)])
        with tempfile.TemporaryDirectory(prefix="bridge-wheel-") as out:
            _run([str(venv / "bin" / "pip"), "wheel", "-q", "--no-deps", "-w", out, str(repo)])
            wheel = next(Path(out).glob("*.whl"))
            # --force-reinstall: the version number does not change between two commits.
            _run([str(venv / "bin" / "pip"), "install", "-q", "--force-reinstall", "--no-deps", str(wheel)])
            _run([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[{EXTRAS}]"])
        stamp.write_text(wanted)
        return venv / "bin"


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, cwd="/")
    if result.returncode != 0:
        output = [line for line in (result.stdout + result.stderr).splitlines()
                  if "is ignored: it is neither a file nor a directory" not in line]
        raise InstallError(f"{' '.join(argv)} exited {result.returncode}:\n" + "\n".join(output[-20:]))


if __name__ == "__main__":
    try:
        print(ensure())
    except InstallError as e:
        sys.exit(f"testenv.install: {e}")
