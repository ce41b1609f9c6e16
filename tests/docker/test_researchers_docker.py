"""The researchers' end-to-end tests of tests/e2e/test_researchers.py with the Docker runtime:
the real slurmd image, whose own /etc/passwd knows none of the site's users until the
entrypoint adds the users ConfigMap, and which sees the site's homes only through the pod's
hostPath volume."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testenv.env import Environment
from tests.e2e.test_researchers import (  # noqa: F401 (collected here, with this module's env)
    alice_run,
    test_alice_sbatch_runs_as_her_on_both_nodes_and_her_files_outlive_the_pods,
    test_bob_cannot_read_alices_private_files_across_the_shared_filesystem,
    test_srun_shows_each_users_own_identity_with_names_on_every_node,
    test_tmp_is_private_to_each_node_and_gone_after_suspend,
)
from tests.e2e.test_unmounted_cwd import (  # noqa: F401
    home_dir,
    test_sbatch_from_a_directory_no_pod_mounts_is_refused_at_submit_with_the_reason,
    test_srun_in_a_batch_script_in_the_pod_is_checked_there_too,
    unmounted_dir,
)

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
