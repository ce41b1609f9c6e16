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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = Path("/opt/slurm-k8s-bridge-ci")
SYSTEM_PYTHON = Path("/usr/bin/python3")
EXTRAS = "check,daemon"
"""`slurm-k8s-bridge check` validates templates, `slurm-k8s-bridge daemon` serves metrics: an
admin who runs them installs these extras too."""
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
    """Make or refresh the install; returns its bin directory. Cheap when up to date; a
    changed source costs a wheel build and a reinstall of the bridge alone (seconds), a
    changed pyproject.toml also its dependencies."""
    venv = venv_dir(repo)
    ROOT.mkdir(parents=True, exist_ok=True)
    ROOT.chmod(0o755)
    with open(ROOT / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs of one checkout install once
        wanted = f"{source_digest(repo)}+{EXTRAS}"
        stamp, deps_stamp = venv / ".source-digest", venv / ".pyproject-digest"
        python, pip = venv / "bin" / "python", str(venv / "bin" / "pip")
        if stamp.is_file() and stamp.read_text() == wanted and python.exists():
            return venv / "bin"
        if not python.exists():
            _run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)])
            deps_stamp.unlink(missing_ok=True)
        pyproject = hashlib.sha256((repo / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
        deps_changed = not deps_stamp.is_file() or deps_stamp.read_text() != pyproject
        if deps_changed:  # the build tools, so that a refresh builds without fetching them
            _run([pip, "install", "-q", "setuptools>=64", "wheel"])
        with tempfile.TemporaryDirectory(prefix="bridge-wheel-") as out:
            wheel = build_wheel(repo, Path(out), python)
            # --force-reinstall: the version number does not change between two commits.
            _run([pip, "install", "-q", "--force-reinstall", "--no-deps", str(wheel)])
            if deps_changed:
                _run([pip, "install", "-q", f"{wheel}[{EXTRAS}]"])
        deps_stamp.write_text(pyproject)
        stamp.write_text(wanted)
        return venv / "bin"


def build_wheel(repo: Path, out: Path, python: Path) -> Path:
    """The bridge's wheel, built by ``python`` (a venv with the build tools) from a copy of the
    sources in ``out`` (no build/ left over from another build, none left in the checkout),
    offline; returns its path."""
    source = _copy_sources(repo, out / "src")
    # The PEP 517 call pip would make, without pip's start-up (1 s instead of 8 here).
    _run([str(python), "-c", "import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])",
          str(out)], cwd=source)
    return next(out.glob("*.whl"))


def _copy_sources(repo: Path, into: Path) -> Path:
    into.mkdir()
    for name in _SOURCES:
        if (repo / name).is_dir():
            shutil.copytree(repo / name, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(repo / name, into / name)
    return into


def _run(argv: list[str], cwd: Path = Path("/")) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        output = [line for line in (result.stdout + result.stderr).splitlines()
                  if "is ignored: it is neither a file nor a directory" not in line]
        raise InstallError(f"{' '.join(argv)} exited {result.returncode}:\n" + "\n".join(output[-20:]))


if __name__ == "__main__":
    try:
        print(ensure())
    except InstallError as e:
        sys.exit(f"testenv.install: {e}")
