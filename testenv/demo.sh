#!/usr/bin/env bash
# The first command of the README: install what is needed, start Slurm + the Kubernetes
# stand-in, run `sbatch -N2` on elastic nodes, print the timeline, stop everything.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/testenv/setup.sh"
cd "$repo"
PYTHONPATH="$repo" exec "$repo/.venv/bin/python" -m testenv.demo "$@"
