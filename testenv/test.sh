#!/usr/bin/env bash
# The whole test suite: installs what it needs (testenv/setup.sh), then runs pytest.
# Every daemon a test needs (munged, slurmctld, the Kubernetes API stand-in, the scheduler,
# the pod runner) is started by the test fixtures and stopped by them.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/testenv/setup.sh"
cd "$repo"
exec "$repo/.venv/bin/python" -m pytest "$@"
