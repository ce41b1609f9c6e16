"""The end-to-end tests of tests/e2e/test_elastic_jobs.py with the Docker runtime: every slurmd
pod runs the real slurmd image (docker/slurmd) through the default pod template."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testenv.env import Environment
from tests.e2e.test_elastic_jobs import (  # noqa: F401 (collected here, with this module's env)
    test_refused_pod_sets_node_down_with_the_bridges_reason_and_requeues_the_job,
    test_resume_twice_creates_no_duplicate,
    test_sbatch_runs_on_pods_which_are_gone_after_suspend_time,
    test_srun_prints_both_node_names,
    test_suspend_leaves_a_pod_without_the_bridges_labels_untouched,
)
from tests.e2e.test_researchers import alice_run  # noqa: F401 (the fixture the tests above take)

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


@pytest.fixture
def env(docker_host: str, slurmd_image: str) -> Iterator[Environment]:
    environment = Environment(runtime="docker").start()
    try:
        assert environment.image == slurmd_image
        environment.slurm.wait_for_first_scheduling_pass()
        yield environment
    finally:
        environment.stop()
