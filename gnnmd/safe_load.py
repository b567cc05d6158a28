"""Reading torch files back without running code, with errors a user can act on.

Every ``.pt`` file gnnmd reads (models, simulation checkpoints, training
states) goes through :func:`load_tensors`: ``torch.load(weights_only=True)``,
whose unpickler accepts tensors and plain Python containers only, so a file
carrying pickled code is refused instead of executed. torch's own message for
that case is a page of advice on how to load the file unsafely; the error here
names the file, says what was refused and why, and keeps torch's one relevant line.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from gnnmd.errors import CheckpointError

_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def load_tensors(path: str | os.PathLike, kind: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; any failure is a CheckpointError naming ``path``.

    ``kind`` names what the file should be (for the message), e.g. "gnnmd checkpoint".
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for foreign, truncated or unsafe files
        raise CheckpointError(f"{path}: not a readable {kind} ({describe(error)})") from None


def describe(error: BaseException) -> str:
    """One line for a torch.load failure."""
    text = str(error)
    unsafe = _UNSUPPORTED_GLOBAL.search(text)
    if unsafe:
        return (
            f"it holds a Python object ({unsafe.group(1)}) that could run code when loaded; gnnmd "
            "loads tensors and plain values only"
        )
    if isinstance(error, pickle.UnpicklingError) or "WeightsUnpickler" in text:
        return "not a torch file, or one holding more than tensors and plain values"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first[:200]}"
