#!/usr/bin/env bash
# The whole test suite: installs what it needs (testenv/setup.sh), then runs pytest.
# Every daemon a test needs (munged, slurmctld, the Kubernetes API stand-in, the scheduler,
# the pod runner, the project's dockerd) is started by the test fixtures and stopped by them.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/testenv/setup.sh"
# Docker: the images and the project's own engine (started and stopped by the tests). A failed
# set-up must not stop the rest of the suite; it is recorded, and every docker-marked test then
# fails with its reason (never skipped, so CI cannot go green without them).
if ! bash "$repo/testenv/docker-setup.sh"; then
  echo "test.sh: the Docker set-up failed; the docker-marked tests will fail with its reason" >&2
fi
cd "$repo"
if [ "$#" -gt 0 ]; then
  exec "$repo/.venv/bin/python" -m pytest "$@"
fi
# With no arguments (CI): the whole suite with the hooks following their jobs, then the whole
# end-to-end suite again with `slurm-k8s-bridge daemon` following them (README "Follow modes";
# ~8 min on 2 cores). Both passes run; either failing fails the run.
status=0
"$repo/.venv/bin/python" -m pytest || status=$?
"$repo/.venv/bin/python" -m pytest --follow-mode=daemon tests/e2e || status=$?
exit "$status"
