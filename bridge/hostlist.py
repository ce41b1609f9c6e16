"""Slurm hostlist expressions (``elastic[1-3,7]``): exactly Slurm's grammar, nothing more.

What Slurm 22.05's ``hostlist_create`` accepts (checked with ``scontrol show hostnames``), less
what slurmctld never writes and a person only types by mistake:

* a hostlist is names separated by ``,``;
* a name is either plain (``login1``, ``w{{7*7}}``) or text with one or more bracket groups,
  the last group ending the name: ``gpu[001-128]``, ``rack[1-2]-node[01-04]`` (the first group
  varies slowest, as in Slurm);
* a bracket group holds numbers and ``lo-hi`` ranges separated by ``,``; a number's width is
  the width of ``lo`` as written (``[08-11]`` → ``08 09 10 11``, ``[9-11]`` → ``9 10 11``);
  one range holds at most 65,536 names (Slurm's ``MAX_RANGE``).

Refused, with a :class:`UsageError` naming what is wrong: empty items, whitespace and control
characters, unbalanced or nested brackets, text after the last group (Slurm refuses
``a[1-2]b`` too), ``lo > hi``, and ``& ! ^ | @``: ClusterShell's set operators and ``@group``
names, which Slurm would take as part of a node name and which would make an expression
silently mean something else. An expression naming more than :data:`MAX_NODES` nodes is
refused before anything is expanded.

Everything here is linear in the length of the expression and of the result. We never shell
out to ``scontrol show hostnames`` (a process per call on the hook's critical path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Iterable, Iterator

from bridge.errors import UsageError

MAX_NODES = 100_000
"""Most nodes one expression may name: ten times the largest Slurm cluster running today.
Beyond it the expression is a mistake, and expanding it would cost seconds and memory."""
MAX_RANGE = 65_536
"""Most names one ``lo-hi`` range may hold (Slurm's own limit, ``MAX_RANGE``)."""

MAX_DIGITS = 18
"""Most digits of a number in a range: Slurm reads them into an unsigned long."""

_DIGITS = frozenset("0123456789")
_OPERATORS = frozenset("&!^|@")
_PLAIN = re.compile(r"[^,\[\]&!^|@\s\x00-\x1f\x7f-\x9f]*")
"""A run of name characters: what stops it is a separator, a bracket or a refused character."""
_QUOTE_MAX = 60


@dataclass(slots=True)
class _Range:
    lo: int
    hi: int
    width: int

    def names(self) -> Iterator[str]:
        return (f"{n:0{self.width}d}" for n in range(self.lo, self.hi + 1))

    def holds(self, digits: str) -> bool:
        if len(digits) > MAX_DIGITS:  # no range of ours holds it, and int() of it may refuse
            return False
        n = int(digits)
        return self.lo <= n <= self.hi and f"{n:0{self.width}d}" == digits


@dataclass(slots=True)
class _Name:
    """One comma-separated item: ``texts[0] group[0] texts[1] group[1] ...``; a plain name has
    one text and no group."""

    texts: tuple[str, ...]
    groups: tuple[tuple[_Range, ...], ...]

    def count(self) -> int:
        if not self.groups:
            return 1
        total = 1
        for group in self.groups:
            total *= sum(r.hi - r.lo + 1 for r in group)
        return total

    def names(self) -> Iterator[str]:
        if not self.groups:
            yield self.texts[0]
            return
        columns = [[t + d for r in group for d in r.names()] for t, group in zip(self.texts, self.groups)]
        for parts in product(*columns):
            yield "".join(parts)

    def holds(self, node: str) -> bool:
        return _match(node, 0, self.texts, self.groups)


def _match(node: str, at: int, texts: tuple[str, ...], groups: tuple[tuple[_Range, ...], ...]) -> bool:
    """Whether ``node[at:]`` is ``texts[0]`` + a number of ``groups[0]`` + the rest. A number
    may be followed by text that starts with digits, so each digit count is tried."""
    if not node.startswith(texts[0], at):
        return False
    at += len(texts[0])
    if not groups:
        return at == len(node)
    end = at
    while end < len(node) and node[end] in _DIGITS:
        end += 1
    for stop in range(end, at, -1):
        digits = node[at:stop]
        if any(r.holds(digits) for r in groups[0]) and _match(node, stop, texts[1:], groups[1:]):
            return True
    return False


def _quote(expression: str) -> str:
    """The expression as an error message shows it: bounded, so a 10,000-character argument
    still gives one readable line."""
    if len(expression) <= _QUOTE_MAX:
        return repr(expression)
    return f"{expression[:_QUOTE_MAX]!r}... ({len(expression)} characters)"


class _Parser:
    """One left-to-right pass over an expression."""

    def __init__(self, expression: str) -> None:
        self.text = expression
        self.at = 0

    def fail(self, problem: str) -> UsageError:
        return UsageError(f"malformed hostlist {_quote(self.text)}: {problem}")

    def names(self) -> tuple[_Name, ...]:
        out: list[_Name] = []
        total = 0
        while True:
            name = self.name()
            total += name.count() if name.groups else 1
            if total > MAX_NODES:
                raise _too_many(self.text)
            out.append(name)
            if self.at == len(self.text):
                return tuple(out)
            self.at += 1  # the comma

    def name(self) -> _Name:
        texts, groups = [self.plain()], []
        while self.at < len(self.text) and self.text[self.at] == "[":
            self.at += 1
            groups.append(self.group())
            texts.append(self.plain())
        if texts[-1] and groups:
            raise self.fail(f"text {texts[-1]!r} after the last ']' (Slurm allows none)")
        if not texts[0] and not groups:
            raise self.fail(f"empty name at character {self.at + 1}")
        return _Name(tuple(texts), tuple(groups))

    def plain(self) -> str:
        start = self.at
        self.at = _PLAIN.match(self.text, start).end()
        if self.at < len(self.text) and self.text[self.at] not in ",[":
            char = self.text[self.at]
            if char == "]":
                raise self.fail(f"']' without '[' at character {self.at + 1}")
            if char in _OPERATORS:
                raise self.fail(f"{char!r} at character {self.at + 1}: Slurm hostlists have no set "
                                "operators or @groups")
            raise self.fail(f"whitespace or control character {char!r} at character {self.at + 1}")
        return self.text[start:self.at]

    def group(self) -> tuple[_Range, ...]:
        close = self.text.find("]", self.at)
        if close < 0:
            raise self.fail("'[' without ']'")
        body = self.text[self.at:close]
        if "[" in body:
            raise self.fail(f"nested '[' at character {self.at + body.index('[') + 1}")
        self.at = close + 1
        return tuple(self.range(part) for part in body.split(","))

    def range(self, part: str) -> _Range:
        lo, dash, hi = part.partition("-")
        if not lo or not set(lo) <= _DIGITS or (dash and (not hi or not set(hi) <= _DIGITS)):
            raise self.fail(f"bad range {_quote(part)}: expected N or N-M with digits")
        if max(len(lo), len(hi)) > MAX_DIGITS:
            raise self.fail(f"bad range {_quote(part)}: a number of more than {MAX_DIGITS} digits")
        low, high = int(lo), int(hi or lo)
        if low > high:
            raise self.fail(f"bad range {part!r}: {low} > {high}")
        if high - low + 1 > MAX_RANGE:
            raise self.fail(f"range {part!r} holds more than {MAX_RANGE:,} names (Slurm's limit)")
        return _Range(low, high, len(lo))


@lru_cache(maxsize=64)
def _parse(expression: str) -> tuple[_Name, ...]:
    if not expression:
        raise UsageError("empty hostlist")
    if expression.count(",") >= MAX_NODES:  # every comma adds at least one name: no need to parse
        raise _too_many(expression)
    return _Parser(expression).names()


def _too_many(expression: str) -> UsageError:
    return UsageError(f"hostlist {_quote(expression)} names more than {MAX_NODES:,} nodes; refused before "
                      "expanding it")


def expand(expression: str) -> list[str]:
    """Node names of a hostlist expression, in Slurm's order, each once.

    Raises:
        UsageError: the expression is empty, malformed, or names more than MAX_NODES nodes.
    """
    names = _parse(expression)
    if all(not name.groups for name in names):
        return list(dict.fromkeys(name.texts[0] for name in names))
    return list(dict.fromkeys(n for name in names for n in name.names()))


def check(expression: str) -> None:
    """Raise :class:`UsageError` if ``expression`` is not a hostlist; expands nothing."""
    _parse(expression)


def contains(expression: str, node: str) -> bool:
    """Whether ``node`` is one of the expression's nodes; expands nothing."""
    return any(name.holds(node) for name in _parse(expression))


def fold(nodes: Iterable[str]) -> str:
    """A hostlist expression Slurm expands to exactly ``nodes`` (``elastic[1-3,7],login``).

    Names are grouped by the text before their trailing digits; runs of consecutive numbers of
    one width become ranges, each at most :data:`MAX_RANGE` long so Slurm accepts them.
    """
    by_prefix: dict[str, list[tuple[int, str]]] = {}
    plain: list[str] = []
    for node in sorted(set(nodes)):
        head = node.rstrip("0123456789")
        if head == node or len(node) - len(head) > MAX_DIGITS:  # no number to fold
            plain.append(node)
        else:
            digits = node[len(head):]
            by_prefix.setdefault(head, []).append((int(digits), digits))
    items = [_fold_prefix(prefix, sorted(numbers)) for prefix, numbers in sorted(by_prefix.items())]
    return ",".join(items + plain)


def _fold_prefix(prefix: str, numbers: list[tuple[int, str]]) -> str:
    ranges: list[list] = []  # [lo digits, hi, width]
    for n, digits in numbers:
        last = ranges[-1] if ranges else None
        if (last is not None and n == last[1] + 1 and f"{n:0{last[2]}d}" == digits
                and n - int(last[0]) < MAX_RANGE):
            last[1] = n
        else:
            ranges.append([digits, n, len(digits)])
    if len(ranges) == 1 and int(ranges[0][0]) == ranges[0][1]:
        return prefix + ranges[0][0]
    parts = [lo if int(lo) == hi else f"{lo}-{hi:0{width}d}" for lo, hi, width in ranges]
    return f"{prefix}[{','.join(parts)}]"
