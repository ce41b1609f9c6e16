"""Checks for the runner's YAML files, with errors that name the file, the field and what was expected."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    def __init__(self, source: str, field: str, expected: str) -> None:
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: expected {expected}")


def expect_mapping(source: str, field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(source, field, "a mapping")
    return value


def expect_str_list(source: str, field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(source, field, "a list of strings")
    return value


def expect_str_map(source: str, field: str, value: Any) -> dict[str, str]:
    """A mapping of strings; YAML numbers become strings ("cpu: 4" means "4")."""
    mapping = expect_mapping(source, field, value)
    result = {}
    for key, item in mapping.items():
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise ConfigError(source, f"{field}.{key}", "a string or a number")
        result[str(key)] = str(item)
    return result
