"""The bridge as a site installs it (README step 1): a wheel that carries every file the hooks
read at run time, installed (not editable) into a venv of the system's Python. The end-to-end
tests run their hooks and the admin CLI from that install (testenv/install.py)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from testenv import install

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_package_and_its_pod_templates(tmp_path):
    # Built offline with the install's build tools, from a copy: nothing fetched, nothing left here.
    wheel = install.build_wheel(REPO, tmp_path, install.ensure() / "python")
    assert wheel.name.startswith("slurm_k8s_bridge-")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"bridge/{p.name}" for p in (REPO / "bridge").glob("*.py")}
    templates = {f"bridge/pod_templates/{p.name}" for p in (REPO / "pod-templates").iterdir() if p.is_file()}
    assert templates and modules - names == set() and templates - names == set()
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("slurm-k8s-resume", "slurm-k8s-suspend", "slurm-k8s-resume-fail", "slurm-k8s-prolog",
                   "slurm-k8s-bridge"):
        assert f"{script} = " in scripts


def test_the_install_runs_from_its_own_files_as_slurm_user():
    bin_dir = install.ensure()
    assert Path(bin_dir / "python").resolve().is_relative_to("/usr")  # the system's Python
    probe = ("import bridge, bridge.config as c; print(bridge.__file__); print(c.default_templates_dir()); "
             "import importlib.util as u; print(u.find_spec('kubernetes_validate') is not None)")
    result = subprocess.run(["runuser", "-u", "slurm", "--", str(bin_dir / "python"), "-c", probe],
                            capture_output=True, text=True, cwd="/", check=True)
    package, templates, schemas = result.stdout.split()
    site = str(install.venv_dir())
    assert package.startswith(site) and not package.startswith(str(REPO))
    assert templates == str(Path(package).parent / "pod_templates")
    assert (Path(templates) / "slurmd.yaml.j2").is_file()
    assert schemas == "True"  # the [check] extra, for `slurm-k8s-bridge check`


def test_the_install_follows_the_sources(tmp_path):
    """A changed source makes a new install: the tests never run yesterday's hooks."""
    before = install.source_digest()
    copy = tmp_path / "repo"
    for name in ("pyproject.toml", "README.md"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text((REPO / name).read_text())
    (copy / "bridge").mkdir()
    (copy / "pod-templates").mkdir()
    (copy / "bridge" / "x.py").write_text("A = 1\n")
    first = install.source_digest(copy)
    (copy / "bridge" / "x.py").write_text("A = 2\n")
    second = install.source_digest(copy)
    (copy / "pod-templates" / "t.yaml.j2").write_text("kind: Pod\n")
    assert len({first, second, install.source_digest(copy)}) == 3
    assert install.source_digest() == before
