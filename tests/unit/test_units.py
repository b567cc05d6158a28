"""gnnmd's unit constants against OpenMM's and ASE's own (never against themselves).

OpenMM uses CODATA 2018, as gnnmd does: equal to 1e-12. ASE 3.29 uses CODATA
2014 by default: its eV and k_B differ from CODATA 2018 by about 1e-8 and
3e-7 relative, hence the looser tolerance there.
"""

from __future__ import annotations

import ase.units
import openmm.unit as omm
import pytest

from gnnmd import units

KJ_PER_MOL = omm.kilojoule_per_mole
ASE_KJ_PER_MOL = ase.units.kJ / ase.units.mol


def test_constants_equal_openmm():
    electron_volt = (1 * omm.elementary_charge * omm.volt * omm.AVOGADRO_CONSTANT_NA).value_in_unit(
        KJ_PER_MOL
    )
    assert units.KJ_PER_MOL_PER_EV == pytest.approx(electron_volt, rel=1e-12)
    gas_constant = omm.MOLAR_GAS_CONSTANT_R.value_in_unit(KJ_PER_MOL / omm.kelvin)
    assert units.BOLTZMANN_KJ_PER_MOL_K == pytest.approx(gas_constant, rel=1e-12)
    assert units.KJ_PER_KCAL == pytest.approx((1 * omm.kilocalorie).value_in_unit(omm.kilojoule), rel=1e-12)
    assert units.NM_PER_ANGSTROM == pytest.approx((1 * omm.angstrom).value_in_unit(omm.nanometer), rel=1e-12)
    assert units.PS_PER_FS == pytest.approx((1 * omm.femtosecond).value_in_unit(omm.picosecond), rel=1e-12)
    force = (1 * omm.kilocalorie_per_mole / omm.angstrom).value_in_unit(KJ_PER_MOL / omm.nanometer)
    assert units.force_to_kj_per_mol_nm("kcal/mol", "angstrom") == pytest.approx(force, rel=1e-12)


def test_constants_equal_ase():
    assert units.KJ_PER_MOL_PER_EV == pytest.approx(ase.units.eV / ASE_KJ_PER_MOL, rel=1e-7)
    assert units.BOLTZMANN_KJ_PER_MOL_K == pytest.approx(ase.units.kB / ASE_KJ_PER_MOL, rel=1e-6)
    assert units.KJ_PER_KCAL == pytest.approx(ase.units.kcal / ase.units.kJ, rel=1e-12)
    assert units.ANGSTROM_PER_NM == pytest.approx(ase.units.nm / ase.units.Angstrom, rel=1e-12)
    per_angstrom = (ase.units.eV / ase.units.Angstrom) / (ASE_KJ_PER_MOL / ase.units.nm)
    assert units.force_to_kj_per_mol_nm("eV", "angstrom") == pytest.approx(per_angstrom, rel=1e-7)
