"""Hostlists as Slurm passes them to the hooks."""

import pytest

from bridge import hostlist
from bridge.errors import UsageError


def test_expand_ranges_and_lists():
    assert hostlist.expand("elastic[1-3,7]") == ["elastic1", "elastic2", "elastic3", "elastic7"]
    assert hostlist.expand("gpu[001-002],cpu1") == ["cpu1", "gpu001", "gpu002"]


def test_fold_is_the_inverse_of_expand():
    nodes = [f"elastic{i}" for i in range(1, 501)]
    assert hostlist.fold(nodes) == "elastic[1-500]"
    assert hostlist.expand(hostlist.fold(nodes)) == nodes


@pytest.mark.parametrize("bad", ["", "  ", "elastic[1-3", "elastic]", "elastic[3-1]", "elastic[a-b]", "a b"])
def test_malformed_hostlist_is_a_usage_error_that_quotes_it(bad):
    with pytest.raises(UsageError) as error:
        hostlist.expand(bad)
    assert "hostlist" in str(error.value)


def test_contains():
    assert hostlist.contains("gpu[001-128]", "gpu007")
    assert not hostlist.contains("gpu[001-128]", "gpu7")
