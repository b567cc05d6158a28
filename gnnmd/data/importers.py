"""Importers: existing reference data into the gnnmd dataset format (nm, kJ/mol).

Units are converted here, at the boundary, through :mod:`gnnmd.units`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gnnmd.assets import reference_data_dir
from gnnmd.data.dataset import DatasetError, write_molecule
from gnnmd.topology import CGTopology, custom_topology
from gnnmd.units import energy_to_kj_per_mol, force_to_kj_per_mol_nm, length_to_nm

CGNET_DIR = reference_data_dir("cgnet_ala2")
#: CGnet's 5-bead alanine dipeptide: C(ACE) N CA C (ALA) N(NME), a linear chain.
CGNET_ALA2_BEADS = ("ACE.C", "ALA.N", "ALA.CA", "ALA.C", "NME.N")
CGNET_ALA2_MASSES_AMU = (12.011, 14.007, 12.011, 12.011, 14.007)


def cgnet_ala2_topology() -> CGTopology:
    """The CG topology of CGnet's alanine dipeptide (5 beads, 4 bonds, φ and ψ dihedrals)."""
    return custom_topology(
        "ala2", CGNET_ALA2_BEADS, CGNET_ALA2_MASSES_AMU, [(0, 1), (1, 2), (2, 3), (3, 4)],
        source="CGnet alanine dipeptide (coarse-graining/cgnet)",
    )  # fmt: skip


def load_array(path: str | os.PathLike) -> np.ndarray:
    """A numeric .npy array; pickled or object arrays are refused (reading them could run code)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable numeric .npy array ({error})") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        kind = type(array).__name__ if not isinstance(array, np.ndarray) else array.dtype
        raise DatasetError(f"{path}: holds {kind}, expected a numeric .npy array")
    return array


def import_arrays(
    output: str | os.PathLike,
    topology: CGTopology,
    coordinates_path: str | os.PathLike,
    forces_path: str | os.PathLike,
    length_unit: str,
    energy_unit: str,
    description: str = "",
    energies_path: str | os.PathLike | None = None,
) -> Path:
    """Import (F, n, 3) coordinate and force arrays (.npy) in the given units into ``output``.

    Args:
        length_unit: unit of the coordinates and of the force denominator ("nm", "angstrom").
        energy_unit: unit of the force numerator and of the energies ("kJ/mol", "kcal/mol", "eV").
        energies_path: optional (F,) .npy of per-frame potential energies in ``energy_unit``,
            stored in kJ/mol.

    Raises:
        DatasetError: the arrays' shapes disagree (the message names both files).
    """
    coordinates = load_array(coordinates_path) * length_to_nm(length_unit)
    forces = load_array(forces_path) * force_to_kj_per_mol_nm(energy_unit, length_unit)
    if coordinates.shape != forces.shape:
        raise DatasetError(
            f"{coordinates_path} has shape {coordinates.shape} but {forces_path} has {forces.shape}"
        )
    energies = None
    if energies_path is not None:
        energies = load_array(energies_path) * energy_to_kj_per_mol(energy_unit)
        if energies.shape != coordinates.shape[:1]:
            raise DatasetError(
                f"{energies_path} has shape {energies.shape} but {coordinates_path} has "
                f"{coordinates.shape}: expected one energy per frame, shape {coordinates.shape[:1]}"
            )
    write_molecule(output, topology, coordinates, forces, energies, description=description)
    return Path(output)


def import_cgnet_ala2(output: str | os.PathLike, directory: str | os.PathLike = CGNET_DIR) -> Path:
    """Import the shipped CGnet alanine-dipeptide data (Å, kcal/mol/Å) into ``output`` (nm, kJ/mol/nm)."""
    directory = Path(directory)
    return import_arrays(
        output, cgnet_ala2_topology(),
        directory / "cgnet_ala2_coordinates.npy", directory / "cgnet_ala2_forces.npy",
        length_unit="angstrom", energy_unit="kcal/mol",
        description="CGnet alanine dipeptide, AMBER ff99SB-ILDN, 300 K, explicit solvent, 10 ps spacing",
    )  # fmt: skip
