"""Strict construction of configuration dataclasses from mappings (checkpoints, JSON files)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

Config = TypeVar("Config")


def from_mapping(cls: type[Config], values: Mapping[str, Any], label: str) -> Config:
    """``cls(**values)``, refusing keys that are not fields of ``cls`` (named, with the allowed ones)."""
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {label} keys {unknown}; allowed: {sorted(known)}")
    return cls(**values)
