"""``slurm-k8s-bridge slurm-lua``: the generated job_submit.lua and cli_filter.lua refuse a job
whose files are not on a filesystem its elastic nodes mount, with a message naming the path and
the mounts; nothing a config holds can become Lua code. The scripts run here under Debian's
lua5.1, the interpreter slurmctld links (liblua5.1), with a stand-in ``slurm`` table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge import config as config_module, slurmlua
from bridge.cli import main as cli_main

LUA = shutil.which("lua5.1")
needs_lua = pytest.mark.skipif(LUA is None, reason="lua5.1 not installed (testenv/setup.sh installs it)")

CONFIG = """
slurm:
  conf_server: slurmctld.example:6817
  cluster_name: linux
log:
  file: null
resume:
  state_dir: {state_dir}
nodesets:
  - name: cpu
    nodes: elastic[1-4]
    image: slurm-k8s-bridge/slurmd:22.05.8
    filesystems:
      - {name: home, path: /home, host_path: /home}
      - {name: scratch, path: /scratch, nfs: {server: nfs.example, path: /export/scratch}}
      - {name: apps, path: /apps, host_path: /apps, read_only: true}
  - name: gpu
    nodes: gpu[01-02]
    image: slurm-k8s-bridge/slurmd:22.05.8
    filesystems:
      - {name: home, path: /home, host_path: /home}
"""
PARTITIONS = {"cpu": "elastic[1-4]", "gpu": "gpu[01-02]", "both": "elastic[1-2],gpu01",
              "static": "node[001-100]", "mixed": "node[001-002],elastic3"}


@pytest.fixture
def site(write_config):
    return config_module.load(str(write_config(CONFIG)))


def run_lua(script: str, calls: str, tmp_path: Path) -> list[str]:
    """Load ``script`` as Slurm would (a ``slurm`` table with log functions and return codes),
    run ``calls``; each ``emit`` is one line of the result."""
    (tmp_path / "script.lua").write_text(script)
    harness = textwrap.dedent("""
        local out = {}
        function emit(...) local t = {} for i = 1, select('#', ...) do t[i] = tostring(select(i, ...)) end
          out[#out + 1] = table.concat(t, "|") end
        local user = {}
        slurm = {SUCCESS = 0, ERROR = -1,
          log_user = function(fmt, ...) user[#user + 1] = string.format(fmt, ...) end,
          log_error = function(fmt, ...) user[#user + 1] = string.format(fmt, ...) end,
          log_info = function() end}
        function last_message() local m = user[#user] user = {} return m end
        ENV = {}
        os.getenv = function(name) return ENV[name] end
        CWD = "/"
        io.popen = function() return {read = function() return CWD end, close = function() end} end
        assert(dofile(%s) == 0, "the script must return slurm.SUCCESS")
        %s
        io.write(table.concat(out, "\\n"))
        """) % (slurmlua.lua_string(str(tmp_path / "script.lua")), calls)
    (tmp_path / "harness.lua").write_text(harness)
    result = subprocess.run([LUA, str(tmp_path / "harness.lua")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def parts_lua(partitions: dict[str, str], default: str = "cpu") -> str:
    """part_list as 22.05 passes it: a table keyed by partition name."""
    items = ", ".join(f"[{slurmlua.lua_string(name)}] = {{name = {slurmlua.lua_string(name)}, "
                      f"nodes = {slurmlua.lua_string(nodes)}, flag_default = {1 if name == default else 0}}}"
                      for name, nodes in partitions.items())
    return "{" + items + "}"


def submit(site, tmp_path, jobs: list[dict[str, str | None]], partitions=PARTITIONS) -> list[tuple[int, str]]:
    """slurm_job_submit for each job: (return code, the message the user got or "")."""
    calls = [f"local parts = {parts_lua(partitions)}"]
    for job in jobs:
        fields = ", ".join(f"{key} = {slurmlua.lua_string(value)}" for key, value in job.items() if value is not None)
        calls.append(f"emit(slurm_job_submit({{{fields}}}, parts, 2001), last_message() or '')")
    lines = run_lua(slurmlua.render(site, "job_submit"), "\n".join(calls), tmp_path)
    return [(int(rc), message) for rc, message in (line.split("|", 1) for line in lines)]


def test_lua_string_keeps_every_byte_and_nothing_escapes_the_literal(tmp_path):
    if LUA is None:
        pytest.skip("lua5.1 not installed")
    hostile = ['"..os.exit(3).."', "a\\\"b", "]]..os.exit(3)--[[", "line\nbreak\r\0nul", "é/ü", "\\0651"]
    calls = "\n".join(f"emit(({slurmlua.lua_string(s)}):byte(1, -1))" for s in hostile)
    lines = run_lua("return 0", calls, tmp_path)
    assert lines == ["|".join(str(b) for b in s.encode()) for s in hostile]


def test_lua_string_writes_only_printable_ascii_and_three_digit_escapes():
    assert slurmlua.lua_string('/home/"x"\\\n1') == '"/home/\\034x\\034\\092\\0101"'


def test_the_scripts_are_the_same_for_the_same_config_whatever_the_process(site, write_config):
    # Rendered again on another host or after an upgrade of Python, the script must not change.
    path = write_config(CONFIG)
    for kind in slurmlua.KINDS:
        code = f"from bridge import config, slurmlua; print(slurmlua.render(config.load({str(path)!r}), {kind!r}), end='')"
        scripts = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                                  capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
        assert scripts == {slurmlua.render(site, kind)}


@needs_lua
def test_a_job_from_a_mounted_directory_is_accepted_and_one_from_elsewhere_refused_with_the_mounts(site, tmp_path):
    (ok, _), (refused, message) = submit(site, tmp_path, [
        {"work_dir": "/home/alice/run42", "partition": "cpu"},
        {"work_dir": "/root/run42", "partition": "cpu"}])
    assert ok == 0
    assert refused == -1
    assert message.startswith("slurm-k8s-bridge: working directory /root/run42 is not on a writable filesystem the "
                              "elastic nodes mount (nodeset cpu mounts /apps (read-only), /home, /scratch)")


@needs_lua
def test_output_paths_are_checked_where_they_land(site, tmp_path):
    results = submit(site, tmp_path, [
        {"work_dir": "/home/alice", "std_out": "/tmp/out-%j.txt"},       # the pod's /tmp: lost
        {"work_dir": "/home/alice", "std_err": "../../etc/err"},         # relative, escapes the mount
        {"work_dir": "/home/alice", "std_out": "logs/%x-%j.out"},         # relative, under the work dir
        {"work_dir": "/home/alice", "std_out": "/dev/null", "std_in": "/dev/null"},
        {"work_dir": "/home/alice", "std_in": "/apps/input.dat"},         # read-only is fine to read
        {"work_dir": "/apps/run"},                                        # ... not to write in
        {"work_dir": "/home/../root"},
        {"work_dir": "/homework"},                                        # a prefix, not a directory
    ])
    assert [rc for rc, _ in results] == [-1, -1, 0, 0, 0, -1, -1, -1]
    assert "output file /tmp/out-%j.txt is not" in results[0][1]
    assert "error file /etc/err is not" in results[1][1]
    assert "working directory /apps/run is not" in results[5][1]
    assert "working directory /root is not" in results[6][1]


@needs_lua
def test_every_nodeset_the_job_can_land_on_must_mount_it(site, tmp_path):
    results = submit(site, tmp_path, [
        {"work_dir": "/scratch/a", "partition": "cpu"},
        {"work_dir": "/scratch/a", "partition": "both"},      # gpu01 does not mount /scratch
        {"work_dir": "/scratch/a", "partition": "static,cpu"},
        {"work_dir": "/scratch/a", "partition": "gpu"},
        {"work_dir": "/home/a", "partition": "both"},
    ])
    assert [rc for rc, _ in results] == [0, -1, 0, -1, 0]
    assert "(nodeset gpu mounts /home)" in results[1][1]


@needs_lua
def test_partitions_without_elastic_nodes_are_untouched(site, tmp_path):
    results = submit(site, tmp_path, [
        {"work_dir": "/root", "partition": "static"},
        {"work_dir": "/root", "partition": "mixed"},          # elastic3 is in it
        {"work_dir": "/root", "partition": "no-such-partition"},
    ])
    assert [rc for rc, _ in results] == [0, -1, 0]


@needs_lua
def test_the_default_partition_is_the_one_slurm_marks_default(site, tmp_path):
    calls = (f"local parts = {parts_lua(PARTITIONS, default='static')}\n"
             "emit(slurm_job_submit({work_dir = '/root'}, parts, 0))\n"
             f"parts = {parts_lua(PARTITIONS, default='gpu')}\n"
             "emit(slurm_job_submit({work_dir = '/root'}, parts, 0))")
    assert run_lua(slurmlua.render(site, "job_submit"), calls, tmp_path) == ["0", "-1"]


@needs_lua
def test_hostlists_read_as_slurm_reads_them(site, tmp_path):
    results = submit(site, tmp_path, [{"work_dir": "/root", "partition": p} for p in ("a", "b", "c", "d", "e")],
                     partitions={"a": "gpu[02-03]", "b": "gpu[2-3]", "c": "elastic[0,5-9]",
                                 "d": "x[1-2]-y[01-02],elastic[2,4]", "e": "ALL"})
    assert [rc for rc, _ in results] == [-1, 0, 0, -1, -1]


@needs_lua
def test_a_path_in_the_config_stays_data(write_config, tmp_path):
    hostile = CONFIG.replace("path: /scratch, nfs", 'path: "/scr\\"..os.exit(7)..\\"atch", nfs')
    site = config_module.load(str(write_config(hostile)))
    (rc, message), = submit(site, tmp_path, [{"work_dir": "/root", "partition": "cpu"}])
    assert rc == -1 and '/scr"..os.exit(7).."atch' in message


@needs_lua
def test_srun_in_an_allocation_of_elastic_nodes_checks_its_directory(site, tmp_path):
    calls = textwrap.dedent("""
        local function srun(opts) opts.label = opts.label or "unset" return slurm_cli_pre_submit(opts, 0) end
        emit(srun({}))                                              -- no allocation: job_submit's job
        ENV.SLURM_JOB_NODELIST = "elastic[1-2]"
        CWD = "/root"
        emit(srun({}), last_message())
        emit(srun({chdir = "/home/alice"}))
        CWD = "/home/alice"
        emit(srun({}))
        emit(srun({output = "/tmp/o"}), last_message())
        emit(srun({chdir = "../../root"}))
        emit(slurm_cli_pre_submit({label = "invalid-context"}, 0))   -- sbatch: job_submit's job
        ENV.SLURM_JOB_NODELIST = "node[001-002]"
        CWD = "/root"
        emit(srun({}))
        emit(srun({nodelist = "elastic1"}))
        """)
    lines = run_lua(slurmlua.render(site, "cli_filter"), calls, tmp_path)
    assert lines[0] == "0"
    assert lines[1].startswith("-1|slurm-k8s-bridge: working directory /root is not")
    assert lines[2:4] == ["0", "0"]
    assert lines[4].startswith("-1|slurm-k8s-bridge: output file /tmp/o is not")
    assert lines[5:] == ["-1", "0", "0", "-1"]


def test_the_command_writes_the_script_once_and_leaves_it_when_unchanged(site, write_config, tmp_path, capsys,
                                                                          monkeypatch):
    target = tmp_path / "job_submit.lua"
    for expected in ("written", "unchanged"):
        monkeypatch.setattr("sys.argv", ["slurm-k8s-bridge", "--config", site.path, "slurm-lua", "job_submit",
                                         "-o", str(target)])
        cli_main()  # returns: exit status 0
        assert capsys.readouterr().err == f"{target}: {expected}\n"
    assert target.read_text() == slurmlua.render(site, "job_submit")
    assert oct(target.stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("target", [".", "/", "dir", "t" * 300 + ".lua"])
def test_a_target_that_is_no_file_is_a_usage_error(site, tmp_path, capsys, monkeypatch, target):
    (tmp_path / "dir").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["slurm-k8s-bridge", "--config", site.path, "slurm-lua", "job_submit", "-o", target])
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 64 and err.startswith(f"slurm-k8s-bridge: usage: {target}: ") and err.count("\n") == 1


def test_a_target_that_is_not_text_is_replaced(site, tmp_path, capsys, monkeypatch):
    target = tmp_path / "job_submit.lua"
    target.write_bytes(b"\xff\xfe not UTF-8")
    monkeypatch.setattr("sys.argv", ["slurm-k8s-bridge", "--config", site.path, "slurm-lua", "job_submit",
                                     "-o", str(target)])
    cli_main()
    assert capsys.readouterr().err == f"{target}: written\n"
    assert target.read_text() == slurmlua.render(site, "job_submit")


def test_an_unknown_kind_is_a_usage_error(site, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["slurm-k8s-bridge", "--config", site.path, "slurm-lua", "spank"])
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    assert exit_info.value.code == 64
    assert capsys.readouterr().err.startswith("slurm-k8s-bridge: usage: ")


def test_check_warns_while_slurm_conf_lacks_the_plugins_or_their_scripts_are_stale(site, tmp_path):
    from bridge import check

    settings = {"SLURM_CONF": str(tmp_path / "slurm.conf"), "JobSubmitPlugins": "(null)", "CliFilterPlugins": "(null)"}
    lacking = check.lua_findings(settings, site)
    assert [(f.status, f.topic) for f in lacking] == [("WARN", "JobSubmitPlugins"), ("WARN", "CliFilterPlugins")]
    assert lacking[0].message.startswith("lacks lua: sbatch, salloc and srun outside an allocation from a directory "
                                         "the pods do not mount run in the pod's /tmp")
    assert f"run 'slurm-k8s-bridge slurm-lua job_submit -o {tmp_path}/job_submit.lua'" in lacking[0].message

    settings.update(JobSubmitPlugins="lua", CliFilterPlugins="cli_filter/lua")
    assert [f.status for f in check.lua_findings(settings, site)] == ["WARN", "WARN"]  # no scripts yet
    for kind in slurmlua.KINDS:
        (tmp_path / f"{kind}.lua").write_text(slurmlua.render(site, kind))
    assert [f.status for f in check.lua_findings(settings, site)] == ["OK", "OK"]
    (tmp_path / "cli_filter.lua").write_text("-- edited by hand\n")
    stale = check.lua_findings(settings, site)[1]
    assert stale.status == "WARN" and "is not what the nodesets' filesystems give" in stale.message


def test_check_says_nothing_of_lua_where_no_nodeset_mounts_anything(config):
    from bridge import check

    assert check.lua_findings({"JobSubmitPlugins": "(null)"}, config) == []


@needs_lua
def test_an_update_that_moves_a_pending_jobs_files_or_partition_is_checked_like_a_submit(site, tmp_path):
    calls = textwrap.dedent(f"""
        local parts = {parts_lua(PARTITIONS)}
        local old = {{work_dir = "/root/legacy", partition = "static"}}  -- submitted before the scripts
        emit(slurm_job_modify({{time_limit = 60}}, old, parts, 0))       -- nothing moves: left alone
        emit(slurm_job_modify({{partition = "cpu"}}, old, parts, 0))     -- onto elastic nodes
        old = {{work_dir = "/home/alice", partition = "cpu"}}
        emit(slurm_job_modify({{work_dir = "/root"}}, old, parts, 0))
        emit(slurm_job_modify({{std_out = "logs/%j.out"}}, old, parts, 0))
        """)
    assert run_lua(slurmlua.render(site, "job_submit"), calls, tmp_path) == ["0", "-1", "-1", "0"]


def test_a_script_replaced_within_the_same_second_still_gets_a_newer_mtime(site, tmp_path):
    """slurmctld reloads job_submit.lua only when its mtime, in whole seconds, is past the one it
    loaded: a second install in the same second must not go unnoticed."""
    import os

    target = tmp_path / "job_submit.lua"
    target.write_text("-- the previous script\n")
    future = int(target.stat().st_mtime) + 5
    os.utime(target, (future, future))
    assert slurmlua.install(slurmlua.render(site, "job_submit"), str(target))
    assert int(target.stat().st_mtime) == future + 1
