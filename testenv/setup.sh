#!/usr/bin/env bash
# Install what the one-machine environment and the test suite need, on Debian 12 as root.
# Idempotent: a second run installs nothing. Used by testenv/demo.sh and testenv/test.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Real Slurm from Debian's packages (22.05 on bookworm), munge, tini (the slurmd image's PID 1,
# which the process runtime runs from the host), and the tools the pod
# runner uses to give each pod its own mount/UTS/PID namespaces. liblua5.1-0: what Slurm's
# job_submit/lua and cli_filter/lua plugins dlopen (the test cluster enables both); lua5.1:
# the interpreter the unit tests run the generated scripts with (tests/unit/test_slurm_lua.py).
packages=(slurmctld slurmd slurm-client munge tini util-linux procps python3-venv liblua5.1-0 lua5.1)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  # No systemd here: keep the packages' maintainer scripts from starting daemons.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The bridge and its test tools, in a venv of the repo's own: the hooks' console scripts
# get an absolute interpreter path, which matters because slurmctld runs them with no PATH.
python=${PYTHON:-python3}
if [[ ! -x "$repo/.venv/bin/python" ]]; then
  "$python" -m venv "$repo/.venv"
fi
stamp="$repo/.venv/.installed-$(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [[ ! -e "$stamp" ]]; then
  echo "setup: installing the bridge and test dependencies into .venv"
  "$repo/.venv/bin/pip" install -q --disable-pip-version-check -e "$repo[test]"
  touch "$stamp"
fi

# The bridge as a site installs it, for slurmctld to run as its hooks (as SlurmUser): a wheel
# of this checkout installed into a venv of the system's Python under /opt/slurm-k8s-bridge-ci
# (testenv/install.py; the tests' Environment refreshes it whenever the sources change).
echo "setup: the hooks' install: $("$repo/.venv/bin/python" -m testenv.install)"
