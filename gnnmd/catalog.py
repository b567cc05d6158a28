"""What ships with gnnmd, read without torch: system descriptions and model headers.

``gnnmd systems`` and ``gnnmd models`` answer from here in a fraction of a second
(importing torch alone takes over one). A system is described by its TOML file;
a model's header (format, config, metadata) is read from its checkpoint's pickle
by an unpickler that knows plain containers and torch's tensor records only, and
puts a :class:`TensorRecord` where a tensor would be: nothing is executed and no
tensor data is read. :func:`gnnmd.models.read_checkpoint` reads the whole file.
"""

from __future__ import annotations

import collections
import pathlib
import pickle
import tomllib
import zipfile
from dataclasses import dataclass
from typing import Any

from gnnmd.assets import models_dir, systems_dir
from gnnmd.errors import CheckpointError, TopologyError

#: The system ``gnnmd simulate`` and ``make run`` use when none is named.
DEFAULT_SYSTEM = "chignolin"
#: The model used when none is named.
DEFAULT_MODEL = "default"
PRETRAINED_DIR = models_dir()
_SYSTEM_KEYS = ("name", "title", "pdb", "mapping", "expected_beads", "description", "source")


def list_systems() -> list[str]:
    """Names of the shipped systems, sorted."""
    folder = systems_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def read_system_description(toml_path: pathlib.Path) -> dict[str, Any]:
    """The checked contents of a system TOML file; TopologyError names the file and key."""
    try:
        with toml_path.open("rb") as handle:
            spec = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TopologyError(f"{toml_path}: cannot read system description: {exc}") from exc
    missing = [key for key in _SYSTEM_KEYS if key not in spec]
    if missing:
        raise TopologyError(f"{toml_path}: missing key(s) {missing}")
    if spec["name"] != toml_path.stem:
        raise TopologyError(
            f"{toml_path}: name {spec['name']!r} differs from the file name {toml_path.stem!r}"
        )
    return spec


def list_models() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


@dataclass(frozen=True)
class TensorRecord:
    """Where a header has a tensor: its shape (the data is not read)."""

    shape: tuple[int, ...]


class _HeaderUnpickler(pickle.Unpickler):
    """torch's zip-pickle layout with tensors as :class:`TensorRecord`; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return lambda storage, offset, size, *rest: TensorRecord(tuple(size))
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda tensor, *rest: tensor
        if module == "torch" and (name.endswith("Storage") or name in _DTYPES):
            return name
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a checkpoint header")

    def persistent_load(self, pid: Any) -> Any:
        return None  # a storage record: the tensor data stays in the archive


_DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "bool", "uint8")


def read_header(path: str | pathlib.Path) -> dict:
    """A gnnmd checkpoint's dict with every tensor as a :class:`TensorRecord`; CheckpointError if it
    is not a torch zip archive with plain contents."""
    path = pathlib.Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if len(names) != 1:
                raise CheckpointError(f"{path}: not a torch checkpoint archive (no single data.pkl)")
            with archive.open(names[0]) as handle:
                header = _HeaderUnpickler(handle).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError) as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint header ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: holds a {type(header).__name__}, not a gnnmd checkpoint dict")
    return header
