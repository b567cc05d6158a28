"""Kernel backends: every backend computes the same function, chosen by one switch.

Only ``reference`` (pure torch, TorchScript-able) exists so far; the fused
kernels issue adds ``fused``, ``fused16`` and ``tabulated`` behind this switch.
"""

from __future__ import annotations

BACKENDS = ("reference",)


def resolve_backend(name: str) -> str:
    """Validate a backend name; an unknown or unavailable backend raises ValueError."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {BACKENDS}")
    return name
