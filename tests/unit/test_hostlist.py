"""Hostlists: exactly what Slurm 22.05's hostlist_create accepts (each expected expansion was
seen with ``scontrol show hostnames``), less what only a mistake produces."""

import pytest

from bridge import hostlist
from bridge.errors import UsageError


@pytest.mark.parametrize("expression, names", [
    ("elastic[1-3,7]", ["elastic1", "elastic2", "elastic3", "elastic7"]),
    ("gpu[001-002],cpu1", ["gpu001", "gpu002", "cpu1"]),  # Slurm's order: as written
    ("x[001-003,7]", ["x001", "x002", "x003", "x7"]),
    ("n[01-2]", ["n01", "n02"]),  # the width is lo's, as written
    ("n[1-02]", ["n1", "n2"]),
    ("n[9-11]", ["n9", "n10", "n11"]),
    ("rack[1-2]-node[01-02]", ["rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"]),
    ("a[1-2][3-4]", ["a13", "a14", "a23", "a24"]),
    ("a[1-2]-b[3]-c[4-5]", ["a1-b3-c4", "a1-b3-c5", "a2-b3-c4", "a2-b3-c5"]),
    ("w{{7*7}}", ["w{{7*7}}"]),  # a legal Slurm node name, not a template
    ("ö[1-2]", ["ö1", "ö2"]),
    ("login,login", ["login"]),  # a node named twice is one node
    ("a[0-65535]", [f"a{i}" for i in range(65536)]),  # Slurm's largest range
])
def test_expand_as_slurm_does(expression, names):
    assert hostlist.expand(expression) == names


@pytest.mark.parametrize("bad, says", [
    ("", "empty hostlist"),
    ("a b", "whitespace"),
    ("a\tb", "whitespace"),
    ("a\nNodeName=b", "whitespace"),
    ("a\x00b", "control"),
    ("a,,b", "empty name at character 3"),
    (",a", "empty name at character 1"),
    ("a,", "empty name"),
    ("a|x&y>z", "'|' at character 2"),
    ("elastic[1-4],@all", "'@'"),
    ("a&b", "'&'"), ("!a", "'!'"), ("a^b", "'^'"),
    ("elastic[1-3", "'[' without ']'"),
    ("elastic]", "']' without '['"),
    ("a[1]]", "']' without '['"),
    ("a[[1]]", "nested '['"),
    ("a[1-2]b", "text 'b' after the last ']'"),  # Slurm refuses it too
    ("elastic[3-1]", "3 > 1"),
    ("elastic[a-b]", "bad range 'a-b'"),
    ("a[]", "bad range ''"),
    ("a[1,,2]", "bad range ''"),
    ("a[-1]", "bad range '-1'"),
    ("a[+1-3]", "bad range '+1-3'"),
    ("a[1-70000]", "more than 65,536 names"),
    ("a[١-٣]", "bad range"),  # Arabic-Indic digits are digits to Python, not to Slurm
])
def test_malformed_hostlist_is_a_usage_error_that_says_what_is_wrong(bad, says):
    with pytest.raises(UsageError) as error:
        hostlist.expand(bad)
    assert says in str(error.value)
    assert "\n" not in str(error.value)
    assert error.value.exit_code == 64


def test_an_absurd_size_is_refused_before_expanding():
    for expression in ("n[0-999][000-999]", "a[1-60000],b[1-60000]", ",".join(f"n{i}" for i in range(100_001))):
        with pytest.raises(UsageError, match="more than 100,000 nodes"):
            hostlist.expand(expression)
    assert len(hostlist.expand("n[0-99][000-999]")) == 100_000


def test_a_long_expression_is_quoted_short():
    with pytest.raises(UsageError) as error:
        hostlist.expand("x" * 10_000 + "|")
    assert len(str(error.value)) < 200 and "10001 characters" in str(error.value)


@pytest.mark.parametrize("nodes, folded", [
    ([f"elastic{i}" for i in range(1, 501)], "elastic[1-500]"),
    (["n08", "n09", "n10", "n11"], "n[08-11]"),
    (["n8", "n9", "n10"], "n[8-10]"),
    (["n0", "n00", "n1"], "n[0,00,1]"),
    (["login", "gpu002", "gpu001", "gpu7"], "gpu[001-002,7],login"),
    (["x1"], "x1"),
    ([f"a{i}" for i in range(70_000)], "a[0-65535,65536-69999]"),  # each range within Slurm's limit
])
def test_fold_gives_what_slurm_expands_back(nodes, folded):
    assert hostlist.fold(nodes) == folded
    assert sorted(hostlist.expand(folded)) == sorted(set(nodes))


def test_fold_of_nothing_is_empty():
    assert hostlist.fold([]) == ""


@pytest.mark.parametrize("expression, node, held", [
    ("gpu[001-128]", "gpu007", True),
    ("gpu[001-128]", "gpu7", False),
    ("gpu[001-128]", "gpu129", False),
    ("n[9-11]", "n10", True),
    ("n[9-11]", "n09", False),
    ("rack[1-2]-node[01-04]", "rack2-node03", True),
    ("rack[1-2]-node[01-04]", "rack2-node3", False),
    ("rack[1-2]-node[01-04]", "rack3-node01", False),
    ("a[1-2]1[1-3]", "a213", True),  # the text between groups starts with a digit
    ("a[1-2]1[1-3]", "a214", False),
    ("login,w{{7*7}}", "w{{7*7}}", True),
    ("login", "logi", False),
])
def test_contains_without_expanding(expression, node, held):
    assert hostlist.contains(expression, node) is held
    assert (node in hostlist.expand(expression)) is held
