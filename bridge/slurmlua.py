"""``slurm-k8s-bridge slurm-lua``: Slurm's own Lua plugins, generated from the nodesets'
filesystems, so that a job whose files are not on a filesystem its pods mount is refused at
submit time with a reason the user reads, instead of running in the pod's private ``/tmp``
(slurmstepd falls back to it) and losing its output with the pod (issue 8, "Output never lost").

- ``job_submit.lua`` (slurmctld, ``JobSubmitPlugins=lua``): every new job (sbatch, salloc,
  srun outside an allocation). Its partitions come from slurmctld's own ``part_list`` at each
  submit, never from a copy taken at generation time, so a partition an admin changes with
  ``scontrol update`` is checked as it is now; the nodesets and their mounts are embedded.
- ``cli_filter.lua`` (every client, ``CliFilterPlugins=lua``): srun inside an allocation,
  whose steps never pass job_submit; it reads the allocation's nodes from
  ``SLURM_JOB_NODELIST``. slurmctld serves it to configless slurmd, so srun in a batch script
  running in a pod checks it too.

The rule: the working directory, and stdout/stderr/stdin where they are paths, must lie under
a filesystem that **every** nodeset the job can land on mounts (writable, except stdin). Nodes
of no nodeset (static nodes) are not checked: the site mounts its filesystems there itself.

Config values reach Lua only as string literals in which every byte that is not plain printable
ASCII, and every quote and backslash, is a ``\\ddd`` escape: no path, node or nodeset name can
end the literal and become code. The output depends only on the config, so it can be compared
with what is installed (``check``) and regenerated idempotently.
"""

from __future__ import annotations

from typing import Any, Literal

from bridge.errors import UsageError

Kind = Literal["job_submit", "cli_filter"]
KINDS: tuple[Kind, ...] = ("job_submit", "cli_filter")
FILE_NAMES = {"job_submit": "job_submit.lua", "cli_filter": "cli_filter.lua"}
"""The names Slurm loads them by, from the directory of slurm.conf."""


def lua_string(value: str) -> str:
    """``value`` as a double-quoted Lua 5.1 string literal that is exactly its UTF-8 bytes."""
    out = []
    for byte in value.encode():
        if 0x20 <= byte < 0x7F and byte not in (0x22, 0x5C):  # printable, not " or \
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")  # always 3 digits: a digit after it stays a digit
    return '"' + "".join(out) + '"'


def _nodesets_table(config: Any) -> str:
    """The nodesets in config order (a node belongs to the first that names it, as in the hooks)."""
    lines = ["local NODESETS = {"]
    for nodeset in config.nodesets:
        mounts = ", ".join(f"{{path = {lua_string(fs.path)}, read_only = {'true' if fs.read_only else 'false'}}}"
                           for fs in sorted(nodeset.filesystems, key=lambda fs: fs.path))
        lines.append(f"  {{name = {lua_string(nodeset.name)}, nodes = {lua_string(nodeset.nodes)}, "
                     f"mounts = {{{mounts}}}}},")
    lines.append("}")
    return "\n".join(lines)


_COMMON = r"""
local MAX_NODES = 100000  -- an expression naming more is a mistake: never expanded

-- Slurm's hostlist grammar (bridge/hostlist.py): names separated by ',', each plain or with
-- bracket groups of numbers and lo-hi ranges, a number as wide as lo is written.
-- Returns the list of names, or nil for an expression it does not understand.
local function expand(expr)
  local names, count = {}, 0
  local depth, start = 0, 1
  local terms = {}
  for i = 1, #expr do
    local c = expr:sub(i, i)
    if c == "[" then depth = depth + 1
    elseif c == "]" then depth = depth - 1
    elseif c == "," and depth == 0 then
      terms[#terms + 1] = expr:sub(start, i - 1); start = i + 1
    end
    if depth < 0 or depth > 1 then return nil end
  end
  if depth ~= 0 then return nil end
  terms[#terms + 1] = expr:sub(start)
  for _, term in ipairs(terms) do
    if term == "" then return nil end
    local partial = {""}
    local pos = 1
    while pos <= #term do
      local s, e, inner = term:find("%[([^%]]*)%]", pos)
      local text = term:sub(pos, (s or (#term + 1)) - 1)
      local numbers = {}
      if s then
        for item in (inner .. ","):gmatch("([^,]*),") do
          local lo, hi = item:match("^(%d+)%-(%d+)$")
          if not lo then lo = item:match("^(%d+)$"); hi = lo end
          if not lo then return nil end
          local a, b = tonumber(lo), tonumber(hi)
          if b < a or count + (b - a + 1) * #partial > MAX_NODES then return nil end
          local fmt = "%0" .. #lo .. "d"
          for n = a, b do numbers[#numbers + 1] = fmt:format(n) end
        end
      end
      local grown = {}
      for _, head in ipairs(partial) do
        if s then
          for _, n in ipairs(numbers) do grown[#grown + 1] = head .. text .. n end
        else
          grown[#grown + 1] = head .. text
        end
      end
      partial = grown
      pos = s and (e + 1) or (#term + 1)
    end
    for _, name in ipairs(partial) do
      count = count + 1
      if count > MAX_NODES then return nil end
      names[count] = name
    end
  end
  return names
end

-- Which nodeset each elastic node belongs to: built once per load of this script.
local OWNER = {}
for index, nodeset in ipairs(NODESETS) do
  for _, node in ipairs(expand(nodeset.nodes) or {}) do
    if OWNER[node] == nil then OWNER[node] = index end
  end
end

-- The nodesets of a hostlist's nodes, as a sorted list of indices; static nodes add none.
-- "ALL" (a partition of every node) and what cannot be read count as every nodeset.
local NODESETS_OF, cached = {}, 0
local function nodesets_of(expr)
  if expr == nil or expr == "" then return {} end
  if NODESETS_OF[expr] then return NODESETS_OF[expr] end
  local found, list = {}, {}
  local names = (expr ~= "ALL") and expand(expr) or nil
  if names == nil then
    for index = 1, #NODESETS do found[index] = true end
  else
    for _, node in ipairs(names) do
      local index = OWNER[node]
      if index then found[index] = true end
    end
  end
  for index = 1, #NODESETS do if found[index] then list[#list + 1] = index end end
  if cached >= 256 then NODESETS_OF, cached = {}, 0 end  -- partitions change rarely: bounded
  NODESETS_OF[expr], cached = list, cached + 1
  return list
end

-- An absolute path without ".", ".." or empty components; relative paths are taken from base.
local function normalize(path, base)
  if path:sub(1, 1) ~= "/" then path = (base or "") .. "/" .. path end
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then parts[#parts] = nil
    elseif part ~= "." then parts[#parts + 1] = part end
  end
  return "/" .. table.concat(parts, "/")
end

local function within(path, top)
  return path == top or path:sub(1, #top + 1) == top .. "/"
end

local function mounted(nodeset, path, writable)
  for _, mount in ipairs(nodeset.mounts) do
    if within(path, mount.path) and not (writable and mount.read_only) then return true end
  end
  return false
end

local function mount_list(nodeset)
  local paths = {}
  for _, mount in ipairs(nodeset.mounts) do
    paths[#paths + 1] = mount.path .. (mount.read_only and " (read-only)" or "")
  end
  return #paths > 0 and table.concat(paths, ", ") or "nothing"
end

-- nil when every file of the job is on a filesystem of every nodeset in `indices`, else the
-- message for the user. `files` is a list of {what, path, writable}; work_dir comes first.
local function refusal(indices, work_dir, files)
  for _, file in ipairs(files) do
    local what, raw, writable = file[1], file[2], file[3]
    if raw ~= nil and raw ~= "" then
      local path = normalize(raw, work_dir)
      if not within(path, "/dev") then
        for _, index in ipairs(indices) do
          local nodeset = NODESETS[index]
          if not mounted(nodeset, path, writable) then
            return string.format("slurm-k8s-bridge: %s %s is not on a %sfilesystem the elastic nodes mount " ..
              "(nodeset %s mounts %s); the job would run in the pod's private /tmp and its output be " ..
              "lost with the pod. Submit from, and write to, a directory under one of those.",
              what, path, writable and "writable " or "", nodeset.name, mount_list(nodeset))
          end
        end
      end
    end
  end
  return nil
end
"""

_JOB_SUBMIT = r"""
-- The partitions a job may run in: its own list, else the default partition.
local function partitions_of(job_desc, part_list)
  local by_name, default = {}, nil
  for key, part in pairs(part_list or {}) do
    local name = part.name or key
    by_name[name] = part
    if part.flag_default ~= nil and part.flag_default ~= 0 then default = part end
  end
  local found = {}
  if job_desc.partition == nil or job_desc.partition == "" then
    if default then found[1] = default end
  else
    for name in job_desc.partition:gmatch("[^,]+") do
      if by_name[name] then found[#found + 1] = by_name[name] end
    end
  end
  return found
end

-- The job's files against the nodesets of its partitions: slurm.SUCCESS, or slurm.ERROR with
-- the reason told to the user and logged.
local function check(job, part_list, uid)
  local seen, indices = {}, {}
  for _, part in ipairs(partitions_of(job, part_list)) do
    for _, index in ipairs(nodesets_of(part.nodes)) do
      if not seen[index] then seen[index] = true; indices[#indices + 1] = index end
    end
  end
  if #indices == 0 then return slurm.SUCCESS end  -- no elastic node: untouched
  local work_dir = job.work_dir
  if work_dir == nil or work_dir == "" then return slurm.SUCCESS end
  local message = refusal(indices, work_dir, {
    {"working directory", work_dir, true},
    {"output file", job.std_out, true},
    {"error file", job.std_err, true},
    {"input file", job.std_in, false},
  })
  if message then
    slurm.log_info("%s", message .. " (uid " .. tostring(uid) .. ")")
    slurm.log_user("%s", message)
    return slurm.ERROR
  end
  return slurm.SUCCESS
end

function slurm_job_submit(job_desc, part_list, submit_uid)
  return check(job_desc, part_list, submit_uid)
end

-- An update of a pending job (scontrol update) that moves its files or its partitions is
-- checked as a new job would be; any other update is left alone, even for a job submitted
-- before these scripts were installed.
local MOVES = {"partition", "work_dir", "std_out", "std_err", "std_in"}
function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  local job, moved = {}, false
  for _, field in ipairs(MOVES) do
    local new = job_desc[field]
    if new ~= nil then moved = true end
    job[field] = new or job_rec[field]
  end
  if not moved then return slurm.SUCCESS end
  return check(job, part_list, modify_uid)
end

return slurm.SUCCESS
"""

_CLI_FILTER = r"""
-- srun's own options read "invalid-context" in sbatch and salloc.
local function is_srun(options)
  local label = options["label"]
  return label ~= nil and label ~= "invalid-context"
end

local function current_dir()
  local pwd = io.popen("/bin/pwd 2>/dev/null")
  if pwd == nil then return nil end
  local dir = pwd:read("*l")
  pwd:close()
  return dir
end

function slurm_cli_setup_defaults(options, early)
  return slurm.SUCCESS
end

-- A step of an existing allocation never passes job_submit: check it here. A new job (sbatch,
-- salloc, srun outside an allocation) is checked by job_submit.lua against its partitions.
function slurm_cli_pre_submit(options, offset)
  local allocation = os.getenv("SLURM_JOB_NODELIST")
  if allocation == nil or not is_srun(options) then return slurm.SUCCESS end
  local nodes = options["nodelist"]
  if nodes == nil or nodes == "" or nodes:find("/", 1, true) then nodes = allocation end
  local indices = nodesets_of(nodes)
  if #indices == 0 then return slurm.SUCCESS end
  local dir = options["chdir"]
  if dir == nil or dir == "" or dir:sub(1, 1) ~= "/" then
    local cwd = current_dir()
    if cwd == nil then return slurm.SUCCESS end
    dir = (dir == nil or dir == "") and cwd or normalize(dir, cwd)
  end
  local message = refusal(indices, dir, {
    {"working directory", dir, true},
    {"output file", options["output"], true},
    {"error file", options["error"], true},
    {"input file", options["input"], false},
  })
  if message then
    slurm.log_error("%s", message)
    return slurm.ERROR
  end
  return slurm.SUCCESS
end

function slurm_cli_post_submit(offset, jobid, stepid)
  return slurm.SUCCESS
end

return slurm.SUCCESS
"""

_HEADER = """-- {name}: generated by `slurm-k8s-bridge slurm-lua {kind}` from the bridge's nodesets.
-- Do not edit: regenerate after changing the nodesets' filesystems, and install it beside
-- slurm.conf (docs/hpc-nodes.md, "Output never lost").
"""


def render(config: Any, kind: str) -> str:
    """The Lua script ``kind`` (job_submit or cli_filter) for ``config``'s nodesets.

    Raises:
        UsageError: ``kind`` is neither.
    """
    if kind not in KINDS:
        raise UsageError(f"expected one of {', '.join(KINDS)}, got {kind!r}")
    body = _JOB_SUBMIT if kind == "job_submit" else _CLI_FILTER
    return (_HEADER.format(name=FILE_NAMES[kind], kind=kind) + "\n" + _nodesets_table(config) + "\n"
            + _COMMON + body)


def install(text: str, path: str) -> bool:
    """Write ``text`` to ``path`` in one rename (slurmctld never reads half a script), only when
    it differs: slurmctld reloads job_submit.lua when its mtime changes. True: written."""
    import os
    from pathlib import Path

    target = Path(path)
    try:
        if not target.name or target.is_dir():
            raise UsageError(f"{path}: is a directory, not a file to write the script to")
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e.strerror}") from None
    try:
        if target.read_bytes() == text.encode():
            return False
    except OSError:
        pass
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        temporary.chmod(0o644)
        _newer_than(temporary, target)
        os.replace(temporary, target)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write: {e.strerror}") from None
    return True


def _newer_than(new: Any, old: Any) -> None:
    """Slurm reloads a script only when its mtime, in whole seconds, is past the one it loaded:
    a script replaced within the same second would be ignored until the next change."""
    import os

    try:
        before = int(old.stat().st_mtime)
    except OSError:
        return
    if int(new.stat().st_mtime) <= before:
        os.utime(new, (before + 1, before + 1))
