"""Quantum-chemistry engines: forces are -dE/dx, units are the engines' own, bad frames are refused,
and an SCF that does not converge is reported, not returned as a label."""

from __future__ import annotations

import ase.build
import ase.units
import numpy as np
import pytest

from gnnmd import units
from gnnmd.data.qm import QMInputError, QMSettings, check_frame, engine_for

pytest.importorskip("pyscf", reason="the QM tests run PySCF (test extras)")
pytest.importorskip("tblite", reason="the QM tests run tblite (test extras)")

WATER = ase.build.molecule("H2O")
NUMBERS, POSITIONS_NM = WATER.numbers, WATER.positions * 0.1


def test_constants_equal_the_engines_and_ase():
    from pyscf.data import nist

    ase_kj_per_mol = ase.units.kJ / ase.units.mol
    assert units.KJ_PER_MOL_PER_HARTREE == pytest.approx(ase.units.Hartree / ase_kj_per_mol, rel=1e-8)
    assert units.NM_PER_BOHR == pytest.approx(ase.units.Bohr / ase.units.nm, rel=1e-8)
    assert units.KJ_PER_MOL_PER_HARTREE / units.KJ_PER_MOL_PER_EV == pytest.approx(nist.HARTREE2EV, rel=1e-8)
    assert units.NM_PER_BOHR * 10 == pytest.approx(nist.BOHR, rel=1e-8)


@pytest.mark.parametrize(
    "settings",
    [
        QMSettings("pyscf", "hf", "sto-3g"),
        QMSettings("pyscf", "b3lyp", "sto-3g"),
        QMSettings("tblite", "GFN2-xTB"),
    ],
    ids=["pyscf-hf", "pyscf-b3lyp", "tblite-gfn2"],
)
def test_forces_are_minus_the_energy_gradient(settings):
    engine = engine_for(settings)
    label = engine.label(NUMBERS, POSITIONS_NM)
    assert label.converged and label.forces_kj_per_mol_nm.shape == (3, 3)
    step = 1e-5  # nm
    for atom, axis in ((0, 2), (1, 1), (2, 0)):
        shifted = []
        for sign in (1, -1):
            x = POSITIONS_NM.copy()
            x[atom, axis] += sign * step
            shifted.append(engine.label(NUMBERS, x).energy_kj_per_mol)
        finite_difference = -(shifted[0] - shifted[1]) / (2 * step)
        assert label.forces_kj_per_mol_nm[atom, axis] == pytest.approx(finite_difference, rel=1e-4, abs=0.05)


def test_energy_in_kj_per_mol_from_the_engine_in_hartree():
    from pyscf import gto, scf

    molecule = gto.M(atom=[(int(z), tuple(x)) for z, x in zip(NUMBERS, WATER.positions, strict=True)],
                     basis="sto-3g", unit="Angstrom", verbose=0)  # fmt: skip
    hartree = scf.RHF(molecule).kernel()
    label = engine_for(QMSettings("pyscf", "hf", "sto-3g")).label(NUMBERS, POSITIONS_NM)
    expected = hartree * ase.units.Hartree / (ase.units.kJ / ase.units.mol)
    assert label.energy_kj_per_mol == pytest.approx(expected, rel=1e-8)


def test_unconverged_scf_is_reported_not_labelled():
    label = engine_for(QMSettings("pyscf", "b3lyp", "sto-3g", max_cycle=2)).label(NUMBERS, POSITIONS_NM)
    assert not label.converged and np.isnan(label.energy_kj_per_mol) and label.forces_kj_per_mol_nm.size == 0


@pytest.mark.parametrize(
    "numbers, positions, settings, message",
    [
        (np.array([8, 0, 1]), POSITIONS_NM, QMSettings(), "atom 1 has atomic number 0"),
        (NUMBERS, np.array([[0, 0, 0], [0, 0, 0.01], [0.1, 0, 0]]), QMSettings(),
         "atoms 0 and 1 are 0.0100 nm"),
        (NUMBERS, POSITIONS_NM, QMSettings(multiplicity=2),
         "10 electrons, which cannot have multiplicity 2"),
        (NUMBERS, POSITIONS_NM, QMSettings(charge=1), "9 electrons, which cannot have multiplicity 1"),
    ],
)
def test_bad_frames_are_refused_by_name(numbers, positions, settings, message):
    with pytest.raises(QMInputError, match=message):
        check_frame(numbers, np.asarray(positions, dtype=float), settings, "water.h5 frame 3")


def test_unknown_engine_is_refused():
    with pytest.raises(QMInputError, match="engine 'orca'"):
        QMSettings(engine="orca")


def fake_gpu_packages(monkeypatch, devices: int) -> None:
    """Stand-ins for cupy (reporting ``devices`` CUDA devices) and gpu4pyscf: what this CPU machine
    can check of the GPU engine is its refusals and its glue, not gpu4pyscf's arithmetic."""
    import sys
    import types

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: devices))
    gpu4pyscf = types.ModuleType("gpu4pyscf")
    gpu4pyscf.__version__ = "0.0-stand-in"
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "gpu4pyscf", gpu4pyscf)


def test_gpu_engine_without_its_package_or_a_gpu_is_refused(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gpu4pyscf", None)  # import fails, as where it is not installed
    with pytest.raises(QMInputError, match="pip install gpu4pyscf-cuda12x"):
        engine_for(QMSettings("gpu4pyscf", "hf", "sto-3g"))
    fake_gpu_packages(monkeypatch, devices=0)
    with pytest.raises(QMInputError, match="needs a CUDA GPU"):
        engine_for(QMSettings("gpu4pyscf", "hf", "sto-3g"))


def test_gpu_engine_moves_pyscfs_own_solver_and_brings_the_gradient_back(monkeypatch):
    """The solver is PySCF's, moved with to_gpu(); the gradient comes back from a device array
    (.get()). The move is a stand-in here (no GPU): the label must equal the CPU engine's."""
    from pyscf import scf

    class DeviceArray:
        def __init__(self, values):
            self.values = values

        def get(self):
            return np.asarray(self.values)

    moved = []

    def to_gpu(solver):
        moved.append(type(solver).__name__)
        kernel = solver.nuc_grad_method

        def device_gradients():
            gradients = kernel()
            original = gradients.kernel
            gradients.kernel = lambda *a, **k: DeviceArray(original(*a, **k))
            return gradients

        solver.nuc_grad_method = device_gradients
        return solver

    fake_gpu_packages(monkeypatch, devices=1)
    monkeypatch.setattr(scf.hf.RHF, "to_gpu", to_gpu)
    engine = engine_for(QMSettings("gpu4pyscf", "hf", "sto-3g"))
    assert "gpu4pyscf 0.0-stand-in" in engine.version()
    label = engine.label(NUMBERS, POSITIONS_NM)
    expected = engine_for(QMSettings("pyscf", "hf", "sto-3g")).label(NUMBERS, POSITIONS_NM)
    assert moved == ["RHF"] and label.converged
    assert label.energy_kj_per_mol == pytest.approx(expected.energy_kj_per_mol, rel=1e-10)
    np.testing.assert_allclose(label.forces_kj_per_mol_nm, expected.forces_kj_per_mol_nm, rtol=0, atol=1e-6)
