"""Models trained with other libraries, imported as ordinary gnnmd checkpoints.

Data flows one way: a source file (a TorchMD-Net checkpoint, a TorchMD force-field
YAML, a PSF topology) is read, every option is checked against what gnnmd's
SchNet implements, the weights are converted to gnnmd's units (nm, kJ/mol), and
a checkpoint is written whose metadata records where it came from (library,
version, file SHA-256, source units). After that the source library plays no
part: the checkpoint loads with ``weights_only=True`` like any gnnmd model.

An option gnnmd does not implement is refused with :class:`~gnnmd.errors.ImportModelError`
naming the option and its value, never approximated.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any, Mapping

import torch

from gnnmd.errors import ImportModelError
from gnnmd.runfolder import file_sha256
from gnnmd.safe_load import describe


def read_source_file(path: str | os.PathLike, library: str, allow_pickle: bool = False) -> Any:
    """Load a source library's torch file: safely when it holds tensors and plain containers only.

    A file that needs the full unpickler (a whole ``torch.save``\\ d model object) is
    unpickled only with ``allow_pickle`` (the import command), which says so on stderr.
    """
    path = Path(path)
    if not path.is_file():
        raise ImportModelError(f"{path}: no such {library} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for unsafe, foreign or truncated files
        if not allow_pickle or not isinstance(error, pickle.UnpicklingError):
            raise ImportModelError(f"{path}: not a readable {library} file ({describe(error)})") from None
    _refuse_foreign_globals(path, library)
    print(
        f"gnnmd import: unpickling {path} with the full unpickler (it holds Python objects of "
        f"{library}); a pickle can run code: import only files you trust",
        file=sys.stderr,
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ImportModelError(f"{path}: not a readable {library} file ({describe(error)})") from None


#: Modules whose objects a model file of the supported libraries may name (their classes, torch's).
_ALLOWED_MODULES = ("schnetpack", "torch", "collections", "numpy", "_codecs", "torchmdnet", "mlcg")
_ALLOWED_BUILTINS = frozenset({"set", "frozenset", "slice", "complex", "bytearray", "range"})


def _refuse_foreign_globals(path: Path, library: str) -> None:
    """Before the full unpickler runs: every object the pickle names must come from the model's
    library or torch. torch's own scanner reads the names (it runs nothing, follows the memo, and
    rejects opcodes outside what ``torch.save`` writes); a file naming anything else
    (``builtins.open``, ``os.system``...) or that the scanner cannot read is refused."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as error:  # not a torch.save archive, or opcodes torch.save never writes
        raise ImportModelError(
            f"{path}: not a torch.save archive whose objects can be listed before unpickling "
            f"({describe(error)}); refused (a pickle could run code)"
        ) from None
    foreign = [name for name in names if not _allowed(name)]
    if foreign:
        raise ImportModelError(
            f"{path}: the pickle names {foreign[0]}, which no {library} model holds; refused before "
            "unpickling (it could run code)"
        )


def _allowed(qualified: str) -> bool:
    module, _, name = qualified.rpartition(".")
    if module in ("builtins", "__builtin__"):
        return name in _ALLOWED_BUILTINS
    return module.split(".")[0] in _ALLOWED_MODULES


def provenance(
    library: str, path: str | os.PathLike, length_unit: str, energy_unit: str, **extra: Any
) -> dict:
    """The metadata block an imported checkpoint carries about its source."""
    version = _installed_version(library)
    return {
        "library": library,
        "library_version": version,
        "file": str(Path(path).resolve()),
        "sha256": file_sha256(Path(path)),
        "length_unit": length_unit,
        "energy_unit": energy_unit,
        **extra,
    }


def _installed_version(library: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return None


def check_type_map(types: Mapping[str, int], rows: int, source: Path, index_name: str) -> None:
    """Every bead type maps to an integer row 0..rows-1 of the source model's embedding."""
    if not types:
        raise ImportModelError(f"{source}: the type map is empty")
    for name, index in types.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < rows:
            raise ImportModelError(
                f"{source}: type {name!r} maps to {index_name} {index!r}, outside the model's embedding "
                f"0..{rows - 1}"
            )


def require(condition: bool, source: Path, option: str, value: Any, why: str) -> None:
    """Refuse an option gnnmd does not implement, naming it and its value."""
    if not condition:
        raise ImportModelError(f"{source}: option {option}={value!r} is not supported: {why}")
