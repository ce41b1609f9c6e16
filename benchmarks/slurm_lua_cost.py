"""What the generated job_submit.lua costs per submit (bridge/slurmlua.py).

1. The script alone, under Debian's lua5.1 (the liblua5.1 slurmctld links), with a large site's
   partition: 10,000 elastic nodes in two nodesets plus 1,000 static nodes. Load (the
   node → nodeset table, built once per load), the first submit to a partition (its hostlist
   expanded, then cached by its text), and the steady state, accepted and refused.
2. Real slurmctld (22.05, this host): ``sbatch --hold`` wall time with both plugins (job_submit in
   slurmctld, cli_filter in sbatch itself) and without,
   alternating, on the test cluster's 4-node partition.

    PYTHONPATH=. .venv/bin/python benchmarks/slurm_lua_cost.py [--submits N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

from bridge import slurmlua

CALLS = 20_000


def _site() -> SimpleNamespace:
    def fs(path: str, read_only: bool = False) -> SimpleNamespace:
        return SimpleNamespace(path=path, read_only=read_only)

    return SimpleNamespace(nodesets=[
        SimpleNamespace(name="cpu", nodes="cpu[00001-08000]", filesystems=[fs("/home"), fs("/scratch"),
                                                                            fs("/apps", True)]),
        SimpleNamespace(name="gpu", nodes="gpu[0001-2000]", filesystems=[fs("/home"), fs("/scratch")]),
    ])


def script_alone(lua: str) -> None:
    with tempfile.TemporaryDirectory(prefix="slurm-lua-bench-") as tmp:
        script = Path(tmp) / "job_submit.lua"
        script.write_text(slurmlua.render(_site(), "job_submit"))
        harness = Path(tmp) / "bench.lua"
        harness.write_text(textwrap.dedent(f"""
            slurm = {{SUCCESS = 0, ERROR = -1, log_user = function() end, log_info = function() end}}
            local t0 = os.clock()
            dofile({slurmlua.lua_string(str(script))})
            local loaded = os.clock() - t0
            local parts = {{big = {{name = "big", flag_default = 1,
                                     nodes = "cpu[00001-08000],gpu[0001-2000],node[0001-1000]"}}}}
            t0 = os.clock()
            assert(slurm_job_submit({{work_dir = "/home/alice/run42"}}, parts, 2001) == 0)
            local first = os.clock() - t0
            local function per_call(job, rc)
              local start = os.clock()
              for _ = 1, {CALLS} do assert(slurm_job_submit(job, parts, 2001) == rc) end
              return (os.clock() - start) / {CALLS}
            end
            local ok = per_call({{work_dir = "/home/alice/run42", std_out = "out/%j.txt"}}, 0)
            local refused = per_call({{work_dir = "/root/run42"}}, -1)
            print(string.format("%.6f %.6f %.6f %.6f", loaded, first, ok, refused))
            """))
        out = subprocess.run([lua, str(harness)], capture_output=True, text=True, check=True).stdout.split()
    loaded, first, ok, refused = (float(x) for x in out)
    print("job_submit.lua alone (lua5.1), partition of 11,000 nodes (10,000 elastic in 2 nodesets):")
    print(f"  load (node -> nodeset table)     {loaded * 1e3:8.2f} ms, once per change of the script")
    print(f"  first submit to the partition    {first * 1e3:8.2f} ms, once per partition node list")
    print(f"  submit accepted                  {ok * 1e6:8.2f} us (mean of {CALLS})")
    print(f"  submit refused (message built)   {refused * 1e6:8.2f} us (mean of {CALLS})")


def on_slurmctld(submits: int) -> None:
    from testenv.slurm.cluster import SlurmCluster

    samples: dict[bool, list[float]] = {True: [], False: []}
    clusters = {lua: SlurmCluster(lua_plugins=lua).start() for lua in (True, False)}
    try:
        mount = SimpleNamespace(path=str(clusters[True].layout.job_dir), read_only=False)
        site = SimpleNamespace(nodesets=[SimpleNamespace(name="elastic", nodes="elastic[1-4]", filesystems=[mount])])
        clusters[True].install_lua({kind: slurmlua.render(site, kind) for kind in slurmlua.KINDS})
        for _ in range(submits):
            for lua, cluster in clusters.items():
                env = {**os.environ, **cluster.env}
                start = time.perf_counter()
                done = subprocess.run(["sbatch", "--hold", "-N1", "--wrap", "true"], env=env,
                                      cwd=cluster.layout.job_dir, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"sbatch failed: {done.stderr.strip()}")
                samples[lua].append(time.perf_counter() - start)
    finally:
        for cluster in clusters.values():
            cluster.stop()
    print(f"sbatch --hold on slurmctld 22.05, {submits} submits each, alternating (load {os.getloadavg()[0]:.2f}):")
    for lua, label in ((False, "without the plugins"), (True, "with both Lua plugins")):
        print(f"  {label:20s} median {statistics.median(samples[lua]) * 1e3:6.1f} ms, "
              f"min {min(samples[lua]) * 1e3:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=30)
    args = parser.parse_args()
    lua = shutil.which("lua5.1")
    if lua is None:
        raise SystemExit("lua5.1 is not installed (testenv/setup.sh installs it)")
    print(f"load average {os.getloadavg()[0]:.2f}")
    script_alone(lua)
    on_slurmctld(args.submits)


if __name__ == "__main__":
    main()
