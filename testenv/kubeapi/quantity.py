"""Kubernetes resource quantities ("100m", "2", "1Gi", "500M", "1e3").

The server parses every quantity it stores and writes it back in canonical
form (k8s.io/apimachinery/pkg/api/resource): "0.5" comes back as "500m",
"1024Mi" as "1Gi". Values are exact fractions so comparisons such as
requests <= limits never suffer from float rounding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from math import ceil
from typing import Literal

Format = Literal["DecimalSI", "BinarySI", "DecimalExponent"]

# The real parser's error quotes this expression; clients may show it to users.
QUANTITY_REGEX = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
PARSE_ERROR = f"quantities must match the regular expression '{QUANTITY_REGEX}'"

_NUMBER = re.compile(r"^([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)$")
_EXPONENT = re.compile(r"^[eE]([-+]?[0-9]+)$")

_DECIMAL_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXP = {exp: suffix for suffix, exp in _DECIMAL_SUFFIX.items()}
_BINARY_BY_EXP = {exp: suffix for suffix, exp in _BINARY_SUFFIX.items()}
_NANO = Fraction(1, 10**9)


class QuantityError(ValueError):
    """The text is not a Kubernetes quantity."""


@dataclass(frozen=True, order=False)
class Quantity:
    value: Fraction
    format: Format

    def __lt__(self, other: Quantity) -> bool:
        return self.value < other.value

    def __le__(self, other: Quantity) -> bool:
        return self.value <= other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __str__(self) -> str:
        return canonical(self)

    def is_integer(self) -> bool:
        return self.value.denominator == 1


def parse(text: str | int | float) -> Quantity:
    """Parse a quantity; JSON numbers are accepted like the real decoder does.

    Raises QuantityError with the server's wording when the text is malformed.
    """
    if isinstance(text, bool):
        raise QuantityError(PARSE_ERROR)
    if isinstance(text, (int, float)):
        text = repr(text) if isinstance(text, float) else str(text)
    match = _NUMBER.match(text) if text == text.strip() else None
    if not match or not (match.group(2) or match.group(3)):
        raise QuantityError(PARSE_ERROR)
    sign, whole, frac, suffix = match.groups()
    number = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    scale, fmt = _suffix_scale(suffix)
    value = number * scale
    if sign == "-":
        value = -value
    return Quantity(_round_up_to_nano(value), fmt)


def _suffix_scale(suffix: str) -> tuple[Fraction, Format]:
    if suffix in _DECIMAL_SUFFIX:
        return Fraction(10) ** _DECIMAL_SUFFIX[suffix], "DecimalSI"
    if suffix in _BINARY_SUFFIX:
        return Fraction(2) ** _BINARY_SUFFIX[suffix], "BinarySI"
    exp = _EXPONENT.match(suffix)
    if exp:
        return Fraction(10) ** int(exp.group(1)), "DecimalExponent"
    raise QuantityError(PARSE_ERROR)


def _round_up_to_nano(value: Fraction) -> Fraction:
    """The server keeps at most nano precision, rounding away from zero."""
    scaled = value / _NANO
    if scaled.denominator == 1:
        return value
    magnitude = ceil(abs(scaled))
    return Fraction(magnitude if value > 0 else -magnitude) * _NANO


def canonical(q: Quantity) -> str:
    """The string the server writes back for this quantity."""
    fmt = q.format
    if fmt == "BinarySI" and (abs(q.value) < 1024 or q.value.denominator != 1):
        fmt = "DecimalSI"
    if fmt == "BinarySI":
        return _binary_string(int(q.value))
    return _decimal_string(q.value, fmt)


def _binary_string(value: int) -> str:
    exp = 0
    while exp < 60 and value != 0 and value % (2 ** (exp + 10)) == 0:
        exp += 10
    return f"{value // 2**exp}{_BINARY_BY_EXP.get(exp, '')}"


def _decimal_string(value: Fraction, fmt: Format) -> str:
    if value == 0:
        return "0"
    exp = -9
    mantissa = value * 10**9
    while mantissa.denominator == 1 and mantissa % 1000 == 0 and exp < 18:
        mantissa /= 1000
        exp += 3
    while mantissa.denominator != 1:
        # Cannot happen after nano rounding; kept so a bug shows as digits, not a crash.
        mantissa *= 1000
        exp -= 3
    number = int(mantissa)
    if fmt == "DecimalExponent":
        return f"{number}e{exp}" if exp else str(number)
    return f"{number}{_DECIMAL_BY_EXP[exp]}"


def canonical_text(text: str | int | float) -> str:
    """Parse and re-render; raises QuantityError."""
    return canonical(parse(text))
