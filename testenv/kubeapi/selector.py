"""Label and field selectors as list and watch requests carry them.

Label selectors use the full set-based grammar of
k8s.io/apimachinery/pkg/labels (`a=b`, `a==b`, `a!=b`, `a in (x,y)`,
`a notin (x)`, `a`, `!a`, `a>1`, `a<1`, comma = AND). Field selectors are
`key=value`, `key==value`, `key!=value` terms; which keys a resource
supports is the resource's business (see `resources.FieldGetter`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import names
from .jsonobj import JsonObject


class SelectorError(ValueError):
    """The selector text is malformed; the message is what the server reports."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        return present and _compare(value, self.values[0], self.operator)


def _compare(value: str, bound: str, operator: str) -> bool:
    try:
        number = int(value)
    except ValueError:
        return False
    return number > int(bound) if operator == "gt" else number < int(bound)


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


# --- label selector lexer and parser ----------------------------------------------------------

_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)")


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise SelectorError(f"unable to parse requirement: found '{text[pos:]}'")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


_OPERATORS = {"=": "=", "==": "=", "!=": "!=", "in": "in", "notin": "notin", ">": "gt", "<": "lt"}
_SPECIAL = {"=", "==", "!=", "!", "(", ")", ",", ">", "<"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.pos += 1
        return token

    def expect(self, wanted: str, what: str) -> None:
        token = self.take()
        if token != wanted:
            raise SelectorError(f"unable to parse requirement: found '{token or ''}', expected: {what}")

    def selector(self) -> LabelSelector:
        requirements = []
        while self.peek() is not None:
            requirements.append(self.requirement())
            token = self.take()
            if token is None:
                break
            if token != ",":
                raise SelectorError(f"found '{token}', expected: ',' or 'end of string'")
            if self.peek() is None:
                raise SelectorError("found '', expected: !, identifier, or 'end of string'")
        return LabelSelector(tuple(requirements))

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            return _checked(Requirement(self.key(), "!"))
        key = self.key()
        token = self.peek()
        if token is None or token == ",":
            return _checked(Requirement(key, "exists"))
        if token not in _OPERATORS:
            raise SelectorError(f"unable to parse requirement: found '{token}', expected: in, notin, =, ==, !=, gt, lt")
        self.take()
        operator = _OPERATORS[token]
        values = self.set_values() if operator in ("in", "notin") else (self.single_value(),)
        return _checked(Requirement(key, operator, values))

    def key(self) -> str:
        token = self.take()
        if token is None or token in _SPECIAL:
            raise SelectorError(f"unable to parse requirement: found '{token or ''}', expected: identifier")
        return token

    def single_value(self) -> str:
        token = self.peek()
        if token is None or token == ",":
            return ""
        if token in _SPECIAL:
            raise SelectorError(f"unable to parse requirement: found '{token}', expected: identifier")
        self.pos += 1
        return token

    def set_values(self) -> tuple[str, ...]:
        self.expect("(", "'('")
        values: list[str] = []
        want_value = True
        while True:
            token = self.take()
            if token == ")":
                if want_value and values:
                    values.append("")
                return tuple(values)
            if token == ",":
                if want_value:
                    values.append("")
                want_value = True
                continue
            if token is None or token in _SPECIAL or not want_value:
                raise SelectorError(
                    f"unable to parse requirement: found '{token or ''}', expected: ',', ')' or identifier"
                )
            values.append(token)
            want_value = False


def _checked(req: Requirement) -> Requirement:
    """Validate key and values the way labels.NewRequirement does."""
    problems = names.is_qualified_name(req.key)
    if problems:
        raise SelectorError(f'unable to parse requirement: key: Invalid value: "{req.key}": {"; ".join(problems)}')
    if req.operator in ("in", "notin") and not req.values:
        raise SelectorError(
            "unable to parse requirement: values: Invalid value: []: "
            "for 'in', 'notin' operators, values set can't be empty"
        )
    if req.operator in ("gt", "lt"):
        try:
            int(req.values[0])
        except ValueError:
            raise SelectorError(
                f'unable to parse requirement: values[0]: Invalid value: "{req.values[0]}": '
                "for 'Gt', 'Lt' operators, the value must be an integer"
            ) from None
    for i, value in enumerate(req.values):
        problems = names.is_label_value(value)
        if problems:
            raise SelectorError(
                f'unable to parse requirement: values[{i}][{req.key}]: Invalid value: "{value}": {"; ".join(problems)}'
            )
    return req


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse `labelSelector`; raises SelectorError."""
    if not text or not text.strip():
        return LabelSelector()
    return _Parser(text).selector()


# --- field selectors ----------------------------------------------------------------------------

FieldGetter = Callable[[JsonObject], str]


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negated: bool


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[FieldTerm, ...] = ()

    def matches(self, obj: JsonObject, getters: Mapping[str, FieldGetter]) -> bool:
        return all((getters[t.field](obj) == t.value) != t.negated for t in self.terms)


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current + ("\\" if escaped else ""))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(text: str | None, supported: Mapping[str, FieldGetter]) -> FieldSelector:
    """Parse `fieldSelector`; raises SelectorError for bad syntax or an unsupported field."""
    if not text or not text.strip():
        return FieldSelector()
    terms = []
    for part in _split_unescaped(text, ","):
        match = re.match(r"^(.*?)(!=|==|=)(.*)$", part)
        if not match:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = match.group(1).strip(), match.group(2), _unescape(match.group(3))
        if field not in supported:
            raise SelectorError(f"field label not supported: {field}")
        terms.append(FieldTerm(field, value, op == "!="))
    return FieldSelector(tuple(terms))
