#!/bin/bash
# What the DCGM job-map Prolog/Epilog (docker/slurmd/dcgm-job-map.sh) adds to a job: the Prolog
# delays its first step, the Epilog its end. An 8-GPU job on fake devices and a fake driver tree
# whose minors run against PCI order (root: mknod). Run from the repository root:
#
#   bash benchmarks/gpu_job_map_latency.sh
set -e
cd "$(dirname "$0")/.."
T=$(mktemp -d); trap 'rm -rf $T' EXIT
mkdir -p $T/dev $T/map $T/proc $T/pci
for m in 0 1 2 3 4 5 6 7; do mknod $T/dev/nvidia$m c 195 $m; b=0000:0$m:00.0; mkdir -p $T/proc/$b $T/pci/$b
  printf 'Model: x\nDevice Minor: \t %s\n' $((7-m)) > $T/proc/$b/information; echo 0x030200 > $T/pci/$b/class; done
SLURMD_DEV_DIR=$T/dev SLURMD_GPU_COUNT=8 sh -c '. docker/slurmd/gpu-devices.sh; gpu_link'
python3 - "$T" <<'PY'
import subprocess, sys, time, statistics
T = sys.argv[1]
base = {"SLURMD_DEV_DIR": f"{T}/dev", "DCGM_JOB_MAPPING_DIR": f"{T}/map", "SLURMD_NODENAME": "hgx1", "SLURM_JOB_GPUS": "0,1,2,3,4,5,6,7",
        "SLURMD_GPU_PROC_DIR": f"{T}/proc", "SLURMD_GPU_PCI_DIR": f"{T}/pci"}
def run(ctx, job):
    t = time.perf_counter(); subprocess.run(["/bin/sh", "docker/slurmd/dcgm-job-map.sh"], env={**base, "SLURM_JOB_ID": str(job), "SLURM_SCRIPT_CONTEXT": ctx}, check=True); return time.perf_counter() - t
pro, epi, true = [], [], []
for j in range(30):
    pro.append(run("prolog_slurmd", 1000 + j)); epi.append(run("epilog_slurmd", 1000 + j))
    t = time.perf_counter(); subprocess.run(["/bin/sh", "-c", "true"]); true.append(time.perf_counter() - t)
ms = lambda xs: f"median {statistics.median(xs)*1000:.0f} ms"
print(f"8-GPU job: prolog {ms(pro)}, epilog {ms(epi)}; bare 'sh -c true' {ms(true)}")
PY
