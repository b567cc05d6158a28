"""Read a pickled torch model without the library that defined it, and without running its code.

``torch.save(model)`` pickles a tree of objects whose classes live in the source
library (mlcg, which is not on the package index). Unpickling normally imports those
classes and lets them rebuild themselves — code from the file's world runs. Here every
global the pickle names becomes an :class:`Opaque` record instead (its class path, the
arguments it was built with, the state it was given), except a short list of harmless
torch and standard-library objects that tensors need to be rebuilt. Nothing is imported
from the source library and no callable from the file is run, so a malicious file yields
inert records, and a model file can be read on a machine without the library.

An ``nn.Module`` comes back as a record whose state is the module's ``__dict__``:
:meth:`Opaque.modules` and :meth:`Opaque.tensors` read its ``_modules``, ``_parameters`` and
``_buffers``; :meth:`Opaque.attribute` reads plain attributes (floats, strings, lists).
"""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gnnmd.errors import ImportModelError
from gnnmd.safe_load import describe


class Opaque:
    """Stand-in for an object of a class that was not imported; subclassed once per class path."""

    class_path = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        record = super().__new__(cls)
        record.args = args
        record.state = {}
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # __new__ recorded the arguments; nothing of the source's runs

    def __setstate__(self, state: Any) -> None:
        # (dict state, slot state) as pickle's BUILD passes it for classes with __slots__.
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            state = state[0] or {}
        self.state = state if isinstance(state, dict) else {"_state": state}

    @property
    def class_name(self) -> str:
        return self.class_path.rpartition(".")[2]

    def attribute(self, name: str, default: Any = None) -> Any:
        """A plain attribute of the pickled object (its ``__dict__`` entry)."""
        return self.state.get(name, default)

    def modules(self) -> dict[str, Opaque]:
        """Child modules by name (an ``nn.Module``'s ``_modules``)."""
        children = self.state.get("_modules") or {}
        return {name: child for name, child in children.items() if child is not None}

    def module(self, name: str) -> Opaque:
        child = self.modules().get(name)
        if not isinstance(child, Opaque):
            raise KeyError(f"{self.class_path} has no submodule {name!r}")
        return child

    def tensors(self) -> dict[str, Tensor]:
        """Parameters and buffers by name, detached."""
        found: dict[str, Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if isinstance(value, Tensor):
                    found[name] = value.detach()
        return found

    def __repr__(self) -> str:
        return f"<{self.class_path} (not imported)>"


def _harmless_globals() -> dict[tuple[str, str], Any]:
    """The real objects a pickle of tensors and modules needs: tensor rebuilders, dtypes, containers."""
    found: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
    }
    for name in ("_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"):
        if hasattr(torch._utils, name):
            found[("torch._utils", name)] = getattr(torch._utils, name)
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            found[("torch", name)] = getattr(torch, name)
    for name in ("set", "frozenset", "slice", "complex"):
        found[("builtins", name)] = getattr(builtins, name)
    return found


_HARMLESS = _harmless_globals()


class _OpaqueUnpickler(pickle.Unpickler):
    """Every global outside :data:`_HARMLESS` becomes an :class:`Opaque` subclass named after it."""

    _stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _HARMLESS:
            return _HARMLESS[(module, name)]
        path = f"{module}.{name}"
        if path not in self._stand_ins:
            self._stand_ins[path] = type(name, (Opaque,), {"class_path": path})
        return self._stand_ins[path]


# torch.load takes a pickle *module*; this one unpickles into records.
_opaque_pickle_module = types.SimpleNamespace(
    Unpickler=_OpaqueUnpickler,
    load=lambda file, **kwargs: _OpaqueUnpickler(file, **kwargs).load(),
    __name__="gnnmd_opaque_pickle",
)


def read_opaque(path: str | os.PathLike, library: str) -> Any:
    """The pickled object tree of ``path`` (a ``torch.save`` archive), classes as :class:`Opaque` records."""
    path = Path(path)
    if not path.is_file():
        raise ImportModelError(f"{path}: no such {library} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_opaque_pickle_module)
    except Exception as error:  # torch raises many types for foreign or truncated archives
        raise ImportModelError(f"{path}: not a readable {library} model file ({describe(error)})") from None
