"""Node states as predicates: the same answers from scontrol's text and from Slurm's JSON."""

from __future__ import annotations

import pytest

from bridge import nodestate as ns
from bridge.slurm import node_from_json

# A CLOUD node's walk through one job, as scontrol -o show node writes it (22.05, measured).
WALK = {
    "IDLE+CLOUD+POWERED_DOWN": "powered_down",
    "MIXED+CLOUD+POWERED_DOWN": "powered_down",
    "MIXED+CLOUD+POWERING_UP": "powering_up",
    "MIXED+CLOUD": "allocated",
    "IDLE+CLOUD": "idle",
    "IDLE+CLOUD+POWERING_DOWN": "powering_down",
    "DOWN+CLOUD+POWERED_DOWN+NOT_RESPONDING": "powered_down",
    "ALLOCATED+DRAIN": "drained",
    "DOWN+CLOUD": "down",
}


@pytest.mark.parametrize("text,expected", WALK.items())
def test_word_for_each_step_of_a_cloud_nodes_walk(text, expected):
    assert ns.word(ns.normalize(text)) == expected


def test_every_form_slurm_writes_gives_the_same_answers():
    from_text = ns.normalize("MIXED+CLOUD+POWERING_UP")  # scontrol -o show node
    from_sinfo = node_from_json({"name": "elastic1", "state": "mixed", "state_flags": ["CLOUD", "POWERING_UP"]}).state
    from_json = node_from_json({"name": "elastic1", "state": ["MIXED", "CLOUD", "POWERING_UP"]}).state  # 23.02+
    for state in (from_text, from_sinfo, from_json, ["mixed", "cloud", "powering_up"]):
        assert ns.is_powering_up(state) and ns.is_allocated(state) and ns.needs_pod(state)
        assert not ns.is_up(state) and not ns.is_off(state)


def test_a_registered_node_is_up_until_it_powers_down():
    assert ns.is_up(("IDLE", "CLOUD")) and ns.is_up(("ALLOCATED",)) and ns.is_up(("IDLE", "DRAIN"))
    for state in (("IDLE", "CLOUD", "POWERED_DOWN"), ("IDLE", "CLOUD", "POWERING_DOWN"), ("DOWN", "CLOUD"),
                  ("IDLE", "NOT_RESPONDING"), ("FUTURE",), ()):
        assert not ns.is_up(state), state


def test_sinfo_suffixes_do_not_hide_the_state():
    assert ns.is_down(("DOWN*", "CLOUD")) and ns.is_allocated(("MIXED#",))


def test_drained_in_every_spelling():
    for state in (("IDLE", "DRAIN"), ("MIXED", "DRAINING"), ("IDLE", "DRAINED")):
        assert ns.is_drained(state)
    assert not ns.is_drained(("IDLE", "CLOUD"))


def test_completing_counts_as_allocated():
    assert ns.is_allocated(("IDLE", "COMPLETING")) and ns.is_allocated(("COMPLETING",))
