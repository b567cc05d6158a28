"""The one place that defines units.

gnnmd works internally in OpenMM's unit system:

========  ============  ==========================================
quantity  unit          note
========  ============  ==========================================
length    nm
energy    kJ/mol
time      ps
mass      amu (g/mol)
force     kJ/mol/nm
temp.     K
========  ============  ==========================================

The system is self-consistent: a force in kJ/mol/nm divided by a mass in amu is
an acceleration in nm/ps², and kT/m (kJ/mol per amu) is a squared velocity in
(nm/ps)². Worked example: a 12 amu bead under 120 kJ/mol/nm accelerates at
10 nm/ps².

Other units appear only at the boundaries and are converted here:
ASE uses Å and eV; the coarse-grained literature and mlcg use Å and kcal/mol;
quantum chemistry (PySCF, tblite) uses bohr and hartree.
"""

from __future__ import annotations

ANGSTROM_PER_NM = 10.0
NM_PER_ANGSTROM = 0.1
FS_PER_PS = 1000.0
PS_PER_FS = 1.0e-3
KJ_PER_KCAL = 4.184
#: 1 eV per particle in kJ/mol (CODATA 2018: e * N_A / 1000).
KJ_PER_MOL_PER_EV = 96.48533212331002
#: 1 hartree per particle in kJ/mol (CODATA 2018: E_h N_A / 1000).
KJ_PER_MOL_PER_HARTREE = 2625.4996394798254
#: The Bohr radius in nm (CODATA 2018).
NM_PER_BOHR = 0.0529177210903
#: Boltzmann constant in kJ/mol/K (R, CODATA 2018).
BOLTZMANN_KJ_PER_MOL_K = 0.00831446261815324
NS_PER_PS = 1.0e-3
SECONDS_PER_DAY = 86400.0

_LENGTH_TO_NM = {"nm": 1.0, "angstrom": NM_PER_ANGSTROM, "Å": NM_PER_ANGSTROM, "A": NM_PER_ANGSTROM}
_ENERGY_TO_KJ_PER_MOL = {
    "kJ/mol": 1.0,
    "kcal/mol": KJ_PER_KCAL,
    "eV": KJ_PER_MOL_PER_EV,
}


#: Length and energy unit names accepted at the boundaries.
LENGTH_UNITS = tuple(sorted(_LENGTH_TO_NM))
ENERGY_UNITS = tuple(sorted(_ENERGY_TO_KJ_PER_MOL))


def length_to_nm(unit: str) -> float:
    """Factor that converts a length in ``unit`` to nm (``nm``, ``angstrom``/``Å``/``A``)."""
    try:
        return _LENGTH_TO_NM[unit]
    except KeyError:
        raise ValueError(f"unknown length unit {unit!r}; allowed: {sorted(_LENGTH_TO_NM)}") from None


def energy_to_kj_per_mol(unit: str) -> float:
    """Factor that converts an energy in ``unit`` to kJ/mol (``kJ/mol``, ``kcal/mol``, ``eV``)."""
    try:
        return _ENERGY_TO_KJ_PER_MOL[unit]
    except KeyError:
        raise ValueError(f"unknown energy unit {unit!r}; allowed: {sorted(_ENERGY_TO_KJ_PER_MOL)}") from None


def force_to_kj_per_mol_nm(energy_unit: str, length_unit: str) -> float:
    """Factor that converts a force in ``energy_unit``/``length_unit`` to kJ/mol/nm."""
    return energy_to_kj_per_mol(energy_unit) / length_to_nm(length_unit)


def kt_kj_per_mol(temperature_k: float) -> float:
    """Thermal energy kT in kJ/mol at ``temperature_k`` (K)."""
    return BOLTZMANN_KJ_PER_MOL_K * temperature_k


def ns_per_day(timestep_fs: float, steps_per_second: float) -> float:
    """Simulated nanoseconds per wall-clock day for one trajectory.

    ``timestep_fs`` in fs, ``steps_per_second`` in steps per wall-clock second.
    """
    return timestep_fs * PS_PER_FS * NS_PER_PS * steps_per_second * SECONDS_PER_DAY
