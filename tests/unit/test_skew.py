"""A nodeset image whose slurmd cannot register with the site's slurmctld is told apart before a
job waits on it: newer than slurmctld, or more than two releases older."""

import pytest

from bridge.skew import image_skew, release_index, tag_release


@pytest.mark.parametrize(("controller", "image"), [
    ("24.11.5", "slurm-k8s-bridge/slurmd:24.11.5"),
    ("24.11.5", "registry.example.org:5000/hpc/slurmd:24.05"),
    ("24.11.5", "slurm-k8s-bridge/slurmd:23.11.10"),      # two releases older
    ("23.11.1", "slurm-k8s-bridge/slurmd:23.02.7"),
    ("23.02.7", "slurm-k8s-bridge/slurmd:22.05.8"),
    ("26.05.5", "slurm-k8s-bridge/slurmd:25.05.3-gpu"),
])
def test_same_or_up_to_two_releases_older_is_accepted(controller, image):
    assert image_skew(controller, image) is None


def test_newer_slurmd_is_refused_with_both_versions_named():
    problem = image_skew("24.11.5", "registry.example.org/slurm-k8s-bridge/slurmd:26.05.5")
    assert problem == ("slurmd 26.05 of image registry.example.org/slurm-k8s-bridge/slurmd:26.05.5 is newer than "
                       "slurmctld 24.11.5: slurmd may not be newer than slurmctld")


def test_three_releases_older_is_refused():
    problem = image_skew("26.05.5", "slurm-k8s-bridge/slurmd:24.11.5")
    assert problem is not None and "3 releases older" in problem and "at most 2" in problem
    assert image_skew("24.11.5", "slurm-k8s-bridge/slurmd:22.05.8") is not None  # 23.02, 23.11, 24.05 between


@pytest.mark.parametrize("image", ["slurm-k8s-bridge/slurmd", "slurmd:latest", "registry:5000/slurmd",
                                   "slurmd@sha256:abc", "slurmd:v2"])
def test_a_tag_that_names_no_slurm_version_is_not_judged(image):
    assert tag_release(image) is None
    assert image_skew("24.11.5", image) is None


def test_release_sequence_follows_slurms_own():
    order = [(21, 8), (22, 5), (23, 2), (23, 11), (24, 5), (24, 11), (25, 5), (25, 11), (26, 5)]
    assert [release_index(r) for r in order] == list(range(release_index((21, 8)), release_index((21, 8)) + 9))
    with pytest.raises(ValueError):
        release_index((24, 2))
