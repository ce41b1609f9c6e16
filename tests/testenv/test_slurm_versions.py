"""The slurm.conf each tested Slurm release gets, and the commands that differ by release."""

import re

import pytest

from testenv import docker as engine
from testenv.slurm.config import SNIPPET, read_settings
from testenv.slurm_versions import RELEASES, power_saving_settings, release


def parameters(version):
    return power_saving_settings(version)["SlurmctldParameters"].split(",")


def test_2205_keeps_cloud_reg_addrs_and_later_releases_do_without_it():
    assert "cloud_reg_addrs" in parameters("22.05.8")
    for version in ("23.11", "24.11.5", "26.05"):
        assert "cloud_reg_addrs" not in parameters(version)
        # Nothing else of the site snippet is lost on the way.
        assert [p for p in parameters("22.05") if p != "cloud_reg_addrs"] == parameters(version)


def test_the_snippet_marks_every_setting_that_depends_on_the_release():
    """An admin reading slurm.conf.power-saving sees the same rule the test environment applies."""
    marked = set(re.findall(r"^# (\w+) \[SLURM [\d.]+-[\d.]+\]", SNIPPET.read_text(), re.MULTILINE))
    removed = set().union(*(r.removed_parameters for r in RELEASES.values()))
    assert marked == removed == {"cloud_reg_addrs"}
    assert "cloud_reg_addrs" in read_settings(SNIPPET)["SlurmctldParameters"]


@pytest.mark.parametrize(("version", "argv"), [
    ("22.05.8", ["scontrol", "update", "NodeName=elastic4", "State=POWER_UP"]),
    ("24.11.5", ["scontrol", "power", "up", "elastic4"]),
    ("26.05", ["scontrol", "power", "up", "elastic4"]),
])
def test_manual_power_up_uses_the_command_of_the_release(version, argv):
    assert release(version).power_up("elastic4") == argv


def test_a_release_not_tested_here_still_gets_its_rules():
    untested = release("25.05.1")
    assert untested.debian is None
    assert untested.power_up("e1") == ["scontrol", "power", "up", "e1"]
    assert not release("23.02.7").removed_parameters
    assert release("23.11.1").removed_parameters == {"cloud_reg_addrs"}


def test_images_are_built_for_every_release_of_the_table():
    assert {name: r.debian for name, r in RELEASES.items()} == engine.SLURM_RELEASES
    assert set(engine.PYTHONS) == set(engine.SLURM_RELEASES.values())
