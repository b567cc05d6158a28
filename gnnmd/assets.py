"""The files that ship with gnnmd, all in one folder (``gnnmd/shipped``), found one way.

==============================  ===============================================================
folder                          contents
==============================  ===============================================================
``shipped/systems``             protein structures (PDB) with TOML descriptions and provenance
``shipped/models``              trained and untrained models (gnnmd checkpoints)
``shipped/reference_data``      small reference data sets, each with its PROVENANCE.md
==============================  ===============================================================

The folder is package data: :mod:`importlib.resources` finds it in a source checkout, an
editable install and a wheel alike. Readers such as mdtraj and h5py need real files, so
:func:`shipped_path` refuses an installation that keeps gnnmd inside a zip archive.
"""

from __future__ import annotations

import pathlib
from importlib import resources

SHIPPED = "shipped"


def shipped_path(*parts: str) -> pathlib.Path:
    """The file system path of ``gnnmd/shipped/<parts...>`` (which need not exist)."""
    root = resources.files("gnnmd").joinpath(SHIPPED)
    if not isinstance(root, pathlib.Path):
        raise RuntimeError(
            f"gnnmd's shipped files are inside an archive ({root}); install gnnmd unpacked (pip install)"
        )
    return root.joinpath(*parts)


def systems_dir() -> pathlib.Path:
    """Shipped systems: one TOML description and one PDB file per system, and PROVENANCE.md."""
    return shipped_path("systems")


def models_dir() -> pathlib.Path:
    """Shipped models: ``<name>.pt`` gnnmd checkpoints."""
    return shipped_path("models")


def reference_data_dir(name: str) -> pathlib.Path:
    """A shipped reference data set (``cgnet_ala2``, ``ala2_allatom``) with its PROVENANCE.md."""
    return shipped_path("reference_data", name)
