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
from typing import Any

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
    print(
        f"gnnmd import: unpickling {path} with the full unpickler (it holds Python objects of "
        f"{library}); a pickle can run code: import only files you trust",
        file=sys.stderr,
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ImportModelError(f"{path}: not a readable {library} file ({describe(error)})") from None


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


def require(condition: bool, source: Path, option: str, value: Any, why: str) -> None:
    """Refuse an option gnnmd does not implement, naming it and its value."""
    if not condition:
        raise ImportModelError(f"{source}: option {option}={value!r} is not supported: {why}")
