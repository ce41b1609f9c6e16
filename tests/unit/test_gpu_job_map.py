"""Per-job GPU attribution: the slurmd image's DCGM job-map Prolog/Epilog (docker/slurmd/
dcgm-job-map.sh), the GPU device helpers it shares with the entrypoint (gpu-devices.sh), the
nodeset setting that mounts the mapping directory, and the device check script's --fake mode.

The scripts run as slurmd would run them: with Slurm's variables only, against character
devices made with mknod (root) the way the device plugin passes them: /dev/nvidia<host minor>.
The driver's files (/proc/driver/nvidia/gpus/<pci>/information, /sys/bus/pci/drivers/nvidia) are
fake trees, so a board whose minors run against PCI order can be modelled.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from bridge import validate
from bridge.errors import ConfigError
from bridge.slurm import NodeFacts
from tests.unit.test_templates import load, pod

REPO = Path(__file__).resolve().parents[2]
SLURMD = REPO / "docker" / "slurmd"
JOB_MAP = SLURMD / "dcgm-job-map.sh"
DEVICE_CHECK = REPO / "benchmarks" / "gpu_device_check.sh"
MOUNT = "/run/slurm-k8s-bridge/dcgm-job-map"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of device nodes needs root")


class Host:
    """A GPU host as a pod sees it: device nodes, the driver's per-GPU files, the PCI tree."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = root / "proc"
        self.pci = root / "pci"
        self.map = root / "map"
        for path in (self.proc, self.pci, self.map):
            path.mkdir(parents=True)

    def gpu(self, minor: int, bus: str) -> None:
        """A GPU the driver gave `minor`, at PCI address `bus`."""
        (self.pci / bus).mkdir()
        (self.pci / bus / "class").write_text("0x030200\n")
        (self.proc / bus).mkdir()
        (self.proc / bus / "information").write_text(
            f"Model: \t\t NVIDIA H200\nGPU UUID: \t {self.uuid(minor)}\nBus Location: \t {bus}\n"
            f"Device Minor: \t {minor}\n")

    @staticmethod
    def uuid(minor: int) -> str:
        return f"GPU-{minor:08x}-1111-2222-3333-444455556666"

    def pod(self, name: str, minors: list[int]) -> Path:
        """A pod's /dev with the granted devices, linked as slurm-gpuN by the entrypoint's code."""
        dev = self.devices(name, minors)
        assert self.link(dev, len(minors)).returncode == 0
        return dev

    def devices(self, name: str, minors: list[int]) -> Path:
        dev = self.root / name / "dev"
        dev.mkdir(parents=True)
        for minor in minors:
            os.mknod(dev / f"nvidia{minor}", stat.S_IFCHR | 0o666, os.makedev(195, minor))
        return dev

    def link(self, dev: Path, count: int, **env: str) -> subprocess.CompletedProcess[str]:
        """The entrypoint's gpu_link, with the pod's environment."""
        script = f'. "{SLURMD}/gpu-devices.sh"; gpu_link'
        env = {"SLURMD_DEV_DIR": str(dev), "SLURMD_GPU_COUNT": str(count), "PATH": os.environ["PATH"],
               "SLURMD_GPU_PROC_DIR": str(self.proc), "SLURMD_GPU_PCI_DIR": str(self.pci), **env}
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30)

    @staticmethod
    def links(dev: Path) -> dict[str, str]:
        return {p.name: os.readlink(p) for p in sorted(dev.iterdir()) if p.name.startswith("slurm-gpu")}

    def run(self, dev: Path, context: str, job: int, gpus: str = "", node: str = "gpu1",
            *, mapping: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The script as slurmd runs it: Slurm's variables, no PATH."""
        env = {"SLURM_SCRIPT_CONTEXT": context, "SLURM_JOB_ID": str(job), "SLURMD_NODENAME": node,
               "SLURM_JOB_GPUS": gpus, "SLURMD_DEV_DIR": str(dev), "SLURMD_GPU_PROC_DIR": str(self.proc),
               "SLURMD_GPU_PCI_DIR": str(self.pci), "DCGM_JOB_MAPPING_DIR": str(mapping or self.map)}
        return subprocess.run(["/bin/sh", str(JOB_MAP)], env=env, capture_output=True, text=True, timeout=30)

    def files(self) -> dict[str, list[str]]:
        """What dcgm-exporter reads: numeric file names, job ids one a line."""
        return {p.name: p.read_text().split() for p in sorted(self.map.iterdir()) if p.name.isdigit()}


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


# --- the entrypoint's links in a privileged pod (cgroups: true), which sees every host GPU -------

@needs_root
@pytest.mark.parametrize("visible", ["uuids", "indices"])
def test_a_privileged_pod_links_the_gpus_the_device_plugin_granted_not_every_host_gpu(host, visible):
    # Four GPUs; minors against PCI order on two of them. The pod was granted the GPUs of
    # minors 3 and 0 (NVML indices 2 and 1), and sees all four device nodes.
    for minor, bus in ((1, "0000:07:00.0"), (0, "0000:0f:00.0"), (3, "0000:41:00.0"), (2, "0000:81:00.0")):
        host.gpu(minor, bus)
    dev = host.devices("gpu1", [0, 1, 2, 3])
    granted = f"{host.uuid(3)},{host.uuid(0)}" if visible == "uuids" else "2,1"
    result = host.link(dev, 2, NVIDIA_VISIBLE_DEVICES=granted)
    assert (result.returncode, result.stderr) == (0, "")
    assert host.links(dev) == {"slurm-gpu0": f"{dev}/nvidia0", "slurm-gpu1": f"{dev}/nvidia3"}


@needs_root
@pytest.mark.parametrize("visible", [None, "all", "GPU-not-on-this-host", "MIG-0123"])
def test_more_gpus_than_granted_and_no_grant_to_read_is_the_count_mismatch(host, visible):
    host.gpu(0, "0000:07:00.0")
    host.gpu(1, "0000:0f:00.0")
    dev = host.devices("gpu1", [0, 1])
    result = host.link(dev, 1, **({"NVIDIA_VISIBLE_DEVICES": visible} if visible else {}))
    assert result.returncode == 5 and "the pod sees 2 GPU device(s)" in result.stderr
    assert host.links(dev) == {}


# --- the Prolog and Epilog ---------------------------------------------------------------------

@needs_root
def test_prolog_names_files_by_the_host_index_dcgm_uses_not_by_the_minor(host):
    """On this board the driver's minors run against PCI order (NVML's, hence DCGM's GPU ids):
    /dev/nvidia0 is GPU 1 to nvidia-smi and dcgm-exporter."""
    host.gpu(1, "0000:07:00.0")
    host.gpu(0, "0000:0f:00.0")
    dev = host.pod("gpu1", [0, 1])
    result = host.run(dev, "prolog_slurmd", 42, gpus="1")  # slurm-gpu1 -> /dev/nvidia0 (PCI order)
    assert (result.returncode, result.stderr) == (0, "")
    assert host.files() == {"1": ["42"]}


@needs_root
def test_slurms_gpu_indices_follow_pci_order_as_cuda_numbers_the_gpus(host):
    """Slurm gives a job CUDA_VISIBLE_DEVICES as gres.conf File= indices; CUDA numbers the GPUs
    a pod sees in PCI order. On a board whose minors run against it, slurm-gpu0 must be the
    first GPU on the bus, not /dev/nvidia0, or a job would use the GPU Slurm gave another."""
    host.gpu(1, "0000:07:00.0")
    host.gpu(0, "0000:0f:00.0")
    host.gpu(2, "0000:41:00.0")
    dev = host.pod("gpu1", [0, 1, 2])
    assert host.links(dev) == {"slurm-gpu0": f"{dev}/nvidia1", "slurm-gpu1": f"{dev}/nvidia0",
                               "slurm-gpu2": f"{dev}/nvidia2"}


@needs_root
def test_without_the_drivers_files_the_minor_is_the_index(host):
    dev = host.pod("gpu1", [3, 5])
    assert host.run(dev, "prolog_slurmd", 7, gpus="0,1").returncode == 0
    assert host.files() == {"3": ["7"], "5": ["7"]}


@needs_root
def test_jobs_sharing_a_gpu_each_have_a_line_and_each_epilog_removes_only_its_own(host):
    """Two pods on slices of one GPU (MIG or time-slicing: the pod sees its GPU's node and no
    slurm-gpuN link), running two jobs, then a job of the same number on both."""
    a, b = host.root / "a" / "dev", host.root / "b" / "dev"
    for dev in (a, b):
        dev.mkdir(parents=True)
        os.mknod(dev / "nvidia2", stat.S_IFCHR | 0o666, os.makedev(195, 2))
    host.run(a, "prolog_slurmd", 11, gpus="0", node="mig1")
    host.run(b, "prolog_slurmd", 12, gpus="0", node="mig2")
    assert host.files() == {"2": ["11", "12"]}
    host.run(a, "epilog_slurmd", 11, node="mig1")
    assert host.files() == {"2": ["12"]}
    host.run(b, "epilog_slurmd", 12, node="mig2")
    assert host.files() == {"2": []}  # kept empty: the exporter never finds a listed file gone

    host.run(a, "prolog_slurmd", 13, gpus="0", node="mig1")
    host.run(b, "prolog_slurmd", 13, gpus="0", node="mig2")
    assert host.files() == {"2": ["13"]}  # one line, or the exporter would emit duplicate series
    host.run(a, "epilog_slurmd", 13, node="mig1")
    assert host.files() == {"2": ["13"]}  # still running on mig2
    host.run(b, "epilog_slurmd", 13, node="mig2")
    assert host.files() == {"2": []}


@needs_root
def test_jobs_starting_together_on_one_gpu_are_all_listed(host):
    """Prologs of many pods at once on one shared GPU: each change is made under the lock, so
    no job's line is lost to another prolog's rewrite."""
    devs = []
    for n in range(16):
        dev = host.root / f"p{n}" / "dev"
        dev.mkdir(parents=True)
        os.mknod(dev / "nvidia0", stat.S_IFCHR | 0o666, os.makedev(195, 0))
        devs.append(dev)
    env = {"SLURM_SCRIPT_CONTEXT": "prolog_slurmd", "SLURM_JOB_GPUS": "0", "DCGM_JOB_MAPPING_DIR": str(host.map),
           "SLURMD_GPU_PROC_DIR": str(host.proc), "SLURMD_GPU_PCI_DIR": str(host.pci)}
    running = [subprocess.Popen(["/bin/sh", str(JOB_MAP)], env={**env, "SLURM_JOB_ID": str(100 + n),
                                "SLURMD_NODENAME": f"p{n}", "SLURMD_DEV_DIR": str(dev)}, stderr=subprocess.PIPE)
               for n, dev in enumerate(devs)]
    assert [proc.wait(timeout=30) for proc in running] == [0] * 16
    assert [proc.stderr.read() for proc in running if proc.stderr] == [b""] * 16
    assert host.files() == {"0": [str(100 + n) for n in range(16)]}


@needs_root
def test_without_its_helper_file_the_prolog_still_succeeds(host, tmp_path):
    """A Prolog= path copied to a static node without gpu-devices.sh: a message, never a DOWN node."""
    alone = tmp_path / "alone" / "dcgm-job-map.sh"
    alone.parent.mkdir()
    shutil.copy(JOB_MAP, alone)
    env = {"SLURM_SCRIPT_CONTEXT": "prolog_slurmd", "SLURM_JOB_ID": "5", "SLURM_JOB_GPUS": "0",
           "DCGM_JOB_MAPPING_DIR": str(host.map)}
    if Path("/usr/local/lib/slurm-k8s-bridge/gpu-devices.sh").exists():
        pytest.skip("this host has the image's helper installed")
    result = subprocess.run(["/bin/sh", str(alone)], env=env, capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (0, f"dcgm-job-map: no gpu-devices.sh beside {alone}: nothing mapped\n")


@needs_root
def test_epilog_needs_no_gpu_list_and_leaves_other_jobs(host):
    dev = host.pod("gpu1", [0, 1])
    host.run(dev, "prolog_slurmd", 20, gpus="0")
    host.run(dev, "prolog_slurmd", 21, gpus="1")
    host.run(dev, "epilog_slurmd", 20)  # Slurm need not pass SLURM_JOB_GPUS to the epilog
    assert host.files() == {"0": [], "1": ["21"]}


@needs_root
def test_a_mapping_file_is_replaced_whole_and_nothing_else_looks_like_a_gpu(host):
    dev = host.pod("gpu1", [0])
    host.run(dev, "prolog_slurmd", 30, gpus="0")
    before = (host.map / "0").stat().st_ino
    host.run(dev, "prolog_slurmd", 31, gpus="0")
    assert (host.map / "0").stat().st_ino != before  # renamed into place, never rewritten in place
    assert (host.map / "0").stat().st_mode & 0o777 == 0o644  # the exporter need not run as root
    names = sorted(p.name for p in host.map.iterdir())
    # dcgm-exporter skips directories and names that are not numbers: only "0" is read.
    assert names == [".jobs", ".lock", "0"]


@needs_root
@pytest.mark.parametrize(("job", "gpus", "message"), [
    ("", "0", "SLURM_JOB_ID '' is not a job id"),
    ("12;rm", "0", "SLURM_JOB_ID '12;rm' is not a job id"),
    ("5", "3", "job 5: no device for Slurm GPU 3"),
    ("5", "x", "job 5: SLURM_JOB_GPUS has 'x', not an index"),
])
def test_bad_input_is_one_line_and_never_fails_the_job(host, job, gpus, message):
    """A failing Prolog would set the node DOWN and requeue the job, for the sake of a label."""
    dev = host.pod("gpu1", [0, 1])
    result = host.run(dev, "prolog_slurmd", job, gpus=gpus)  # type: ignore[arg-type]
    assert result.returncode == 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"dcgm-job-map: {message}")
    assert host.files() == {}


@needs_root
def test_without_the_mapping_directory_it_does_nothing(host):
    """A nodeset without dcgm_job_mapping_dir, or a static node with the same Prolog= line."""
    dev = host.pod("gpu1", [0])
    result = host.run(dev, "prolog_slurmd", 9, gpus="0", mapping=host.root / "absent")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not (host.root / "absent").exists()


def test_a_job_without_gpus_writes_nothing(host):
    result = host.run(host.root, "prolog_slurmd", 8, gpus="")
    assert (result.returncode, result.stderr) == (0, "")
    assert host.files() == {}


# --- the entrypoint's GPU linking, now shared ----------------------------------------------------

@needs_root
def test_entrypoint_still_refuses_a_pod_with_fewer_gpus_than_the_gres(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    os.mknod(dev / "nvidia0", stat.S_IFCHR | 0o666, os.makedev(195, 0))
    key = tmp_path / "munge.key"
    key.write_bytes(os.urandom(64))
    key.chmod(0o400)
    env = {"PATH": os.environ["PATH"], "SLURMD_DEV_DIR": str(dev), "SLURMD_GPU_COUNT": "2",
           "SLURMD_GRES": "gpu:a100:2", "MUNGE_KEY_FILE": str(key)}
    result = subprocess.run(["sh", str(SLURMD / "entrypoint.sh"), "-V"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 5
    assert result.stderr.strip() == (f"slurmd-entrypoint: node has Gres gpu:a100:2 but the pod sees 1 GPU "
                                     f"device(s) in {dev}: check the pod's GPU resource and the device plugin")
    assert not (dev / "slurm-gpu0").exists()


# --- the nodeset setting ---------------------------------------------------------------------------

def test_mapping_dir_is_a_host_path_mounted_where_the_prolog_writes(write_config):
    config = load(write_config, "dcgm_job_mapping_dir: /run/dcgm-job-map")
    manifest = pod(config, ("gpu:h100:8",))
    assert {"name": "dcgm-job-map", "mountPath": MOUNT} in manifest["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "dcgm-job-map", "hostPath": {"path": "/run/dcgm-job-map", "type": "DirectoryOrCreate"}} \
        in manifest["spec"]["volumes"]
    assert validate.check_pod(config, NodeFacts("n1", cpus=8, real_memory_mb=16000, gres=("gpu:h100:8",))) == []


def test_no_mapping_dir_no_volume(write_config):
    manifest = pod(load(write_config))
    assert all(v["name"] != "dcgm-job-map" for v in manifest["spec"]["volumes"])


def test_a_relative_mapping_dir_is_a_config_error(write_config):
    with pytest.raises(ConfigError, match=r"nodesets\[0\]\.dcgm_job_mapping_dir: expected `str` matching"):
        load(write_config, "dcgm_job_mapping_dir: run/dcgm")


def test_the_script_the_docs_name_is_the_one_the_image_installs():
    dockerfile = (SLURMD / "Dockerfile").read_text()
    assert "dcgm-job-map.sh" in dockerfile and "/usr/local/lib/slurm-k8s-bridge/" in dockerfile
    assert "Prolog=/usr/local/lib/slurm-k8s-bridge/dcgm-job-map.sh" in (REPO / "docs" / "hpc-nodes.md").read_text()
    assert os.access(JOB_MAP, os.X_OK)
    assert MOUNT in JOB_MAP.read_text()


# --- benchmarks/gpu_device_check.sh --fake --------------------------------------------------------

def _device_check(tmp_path: Path, repo: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "out"
    return subprocess.run(["bash", str(repo / "benchmarks" / "gpu_device_check.sh"), "--fake"],
                          env={"PATH": os.environ["PATH"], "OUT": str(out), **env}, capture_output=True,
                          text=True, timeout=60)


@needs_root
def test_device_check_passes_on_fake_devices_and_prints_the_mapping(tmp_path):
    result = _device_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "gpu_device_check: PASS"
    for check in ("devices", "link", "count", "minor", "host-index", "dcgm-map"):
        assert any(line.split()[:2] == ["PASS", check] for line in lines), check
    # Slurm index, minor, PCI address, derived index, nvidia-smi index and minor, UUID
    assert "0      1      0000:07:00.0   0              0                 1                 GPU-fake-0" in lines
    assert (tmp_path / "out" / "gpu_device_check.txt").read_text().splitlines()[-1] == lines[-1]


@needs_root
def test_device_check_in_a_containers_view_writes_the_host_index_not_nvidia_smis(tmp_path):
    """Granted minor 0 only, nvidia-smi (as in a container) sees one GPU and calls it 0; on the
    host, where DCGM runs, it is GPU 1: the file must be 1, and the index comparison is skipped."""
    result = _device_check(tmp_path, GPU_CHECK_GRANTED="0")
    assert result.returncode == 0, result.stdout
    assert "PASS link        1 GPU(s): slurm-gpu0..0 -> minors 0" in result.stdout
    assert "SKIP host-index  nvidia-smi sees 1 of the host's 2 GPU(s)" in result.stdout
    assert "PASS dcgm-map    file(s) [1]: each GPU's job under its derived host index" in result.stdout
    assert result.stdout.splitlines()[-1] == "gpu_device_check: PASS (skipped: host-index)"


@needs_root
def test_device_check_fails_where_files_are_named_by_minor(tmp_path):
    """The check can fail: with the index taken from the minor, as a naive prolog would."""
    repo = tmp_path / "repo"
    for part in ("benchmarks", "docker/slurmd"):
        shutil.copytree(REPO / part, repo / part)
    lib = repo / "docker" / "slurmd" / "gpu-devices.sh"
    lib.write_text(lib.read_text() + textwrap.dedent("""
        gpu_host_index() { printf '%s\\n' "$1"; }
        """))
    result = _device_check(tmp_path, repo)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "gpu_device_check: FAIL (host-index,dcgm-map)"
