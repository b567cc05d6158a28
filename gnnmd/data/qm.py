"""Quantum-chemistry labels for one frame: energies and forces from PySCF (DFT, HF) or tblite (xTB).

An engine takes atomic numbers and positions (nm) and returns the energy (kJ/mol), the forces
(kJ/mol/nm) and how the calculation went: whether the SCF converged, its cycle count and the
wall time. A calculation that did not converge is returned as such (``converged=False``, no
energy or forces), never as a label. Positions go to the engines in bohr and results come back
in hartree and hartree/bohr; :mod:`gnnmd.units` converts both ways with one pair of constants.

Bad input is refused before any calculation, naming the field and value: an atomic number
that is no element, two atoms closer than :data:`MIN_DISTANCE_NM`, or a charge and
multiplicity that the electron count cannot have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gnnmd.errors import GnnmdError
from gnnmd.units import KJ_PER_MOL_PER_HARTREE, NM_PER_BOHR

ENGINES = ("pyscf", "gpu4pyscf", "tblite")
#: What to install for each engine (gpu4pyscf: the CUDA 12 build; it brings cupy).
PACKAGES = {"pyscf": "pyscf", "gpu4pyscf": "gpu4pyscf-cuda12x", "tblite": "tblite"}
#: Closest approach accepted between two atoms, nm: nuclei this close are a broken frame.
MIN_DISTANCE_NM = 0.04
_FORCE_PER_GRADIENT = -KJ_PER_MOL_PER_HARTREE / NM_PER_BOHR  # -dE/dx: hartree/bohr -> kJ/mol/nm


class QMInputError(GnnmdError, ValueError):
    """A frame a quantum-chemistry engine cannot or should not be given."""


@dataclass(frozen=True)
class QMSettings:
    """What to compute.

    Attributes:
        engine: ``"pyscf"``, ``"gpu4pyscf"`` (PySCF's methods on a CUDA GPU) or ``"tblite"``.
        method: PySCF: ``"hf"`` or a DFT functional (``"b3lyp"``); tblite: ``"GFN2-xTB"``, ``"GFN1-xTB"``.
        basis: PySCF basis set name (``"sto-3g"``, ``"6-31g*"``); ignored by tblite.
        charge: total charge, e.
        multiplicity: 2S + 1.
        conv_tol: SCF energy convergence, hartree.
        max_cycle: SCF iterations before the frame counts as not converged.
    """

    engine: str = "pyscf"
    method: str = "b3lyp"
    basis: str = "sto-3g"
    charge: int = 0
    multiplicity: int = 1
    conv_tol: float = 1e-9
    max_cycle: int = 100

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise QMInputError(f"engine {self.engine!r} is not one of {ENGINES}")
        if self.multiplicity < 1:
            raise QMInputError(f"multiplicity must be >= 1, got {self.multiplicity}")
        if self.max_cycle < 1 or not self.conv_tol > 0:
            raise QMInputError(f"max_cycle {self.max_cycle} and conv_tol {self.conv_tol} must be positive")


@dataclass(frozen=True)
class QMLabel:
    """One frame's result. ``energy_kj_per_mol`` is NaN and ``forces`` empty unless ``converged``."""

    converged: bool
    energy_kj_per_mol: float
    forces_kj_per_mol_nm: np.ndarray = field(repr=False)
    cycles: int
    seconds: float


class QMEngine(Protocol):
    settings: QMSettings

    def version(self) -> str: ...

    def label(self, numbers: np.ndarray, positions_nm: np.ndarray) -> QMLabel: ...


def check_frame(numbers: np.ndarray, positions_nm: np.ndarray, settings: QMSettings, where: str) -> None:
    """Refuse a frame no engine should get; ``where`` names it (file, molecule, frame)."""
    numbers = np.asarray(numbers)
    bad = np.flatnonzero((numbers < 1) | (numbers > 118))
    if bad.size:
        atom = int(bad[0])
        raise QMInputError(f"{where}: atom {atom} has atomic number {int(numbers[atom])}, not an element")
    if positions_nm.shape != (numbers.size, 3) or not np.isfinite(positions_nm).all():
        raise QMInputError(
            f"{where}: positions must be finite, shape ({numbers.size}, 3); got {positions_nm.shape}"
        )
    if numbers.size > 1:
        distances = np.linalg.norm(positions_nm[:, None] - positions_nm[None], axis=-1)
        np.fill_diagonal(distances, np.inf)
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        if distances[i, j] < MIN_DISTANCE_NM:
            raise QMInputError(
                f"{where}: atoms {min(i, j)} and {max(i, j)} are {distances[i, j]:.4f} nm apart "
                f"(below {MIN_DISTANCE_NM} nm): overlapping atoms"
            )
    electrons = int(numbers.sum()) - settings.charge
    unpaired = settings.multiplicity - 1
    if electrons < 0 or unpaired > electrons or (electrons - unpaired) % 2:
        raise QMInputError(
            f"{where}: charge {settings.charge} leaves {electrons} electrons, which cannot have "
            f"multiplicity {settings.multiplicity}"
        )


class PySCFEngine:
    """Restricted (closed shell) or unrestricted Kohn-Sham / Hartree-Fock with analytic gradients.

    With ``gpu`` the same PySCF objects are moved to gpu4pyscf (``to_gpu()``) before the SCF, so
    the method, basis, grids and convergence settings are PySCF's own either way.
    """

    def __init__(self, settings: QMSettings, gpu: bool = False) -> None:
        import pyscf  # noqa: F401 (fail here, not in the first frame)

        if gpu:
            require_gpu4pyscf()
        self.settings, self.gpu = settings, gpu

    def version(self) -> str:
        import pyscf

        if not self.gpu:
            return pyscf.__version__
        import gpu4pyscf

        return f"{pyscf.__version__} (gpu4pyscf {gpu4pyscf.__version__})"

    def label(self, numbers: np.ndarray, positions_nm: np.ndarray) -> QMLabel:
        from pyscf import dft, gto, scf

        s = self.settings
        start = time.perf_counter()
        bohr = np.asarray(positions_nm, dtype=np.float64) / NM_PER_BOHR
        molecule = gto.M(
            atom=[(int(z), tuple(x)) for z, x in zip(numbers, bohr, strict=True)], unit="Bohr",
            basis=s.basis, charge=s.charge, spin=s.multiplicity - 1, verbose=0,
        )  # fmt: skip
        open_shell = s.multiplicity > 1
        if s.method.lower() == "hf":
            solver = scf.UHF(molecule) if open_shell else scf.RHF(molecule)
        else:
            solver = dft.UKS(molecule) if open_shell else dft.RKS(molecule)
            solver.xc = s.method
        solver.conv_tol, solver.max_cycle = s.conv_tol, s.max_cycle
        if self.gpu:
            solver = solver.to_gpu()
        energy = solver.kernel()
        cycles = int(getattr(solver, "cycles", -1))
        if not solver.converged:
            return _not_converged(cycles, time.perf_counter() - start)
        gradient = _on_host(solver.nuc_grad_method().kernel())
        return QMLabel(
            True, float(energy) * KJ_PER_MOL_PER_HARTREE, gradient * _FORCE_PER_GRADIENT,
            cycles, time.perf_counter() - start,
        )  # fmt: skip


def require_gpu4pyscf() -> None:
    """QMInputError unless cupy sees a CUDA device; ImportError where gpu4pyscf or cupy is missing
    (:func:`engine_for` says what to install)."""
    import cupy
    import gpu4pyscf  # noqa: F401

    try:
        devices = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as error:  # cupy raises its CUDARuntimeError where there is no driver
        raise QMInputError(f"engine 'gpu4pyscf' needs a CUDA GPU; cupy finds none ({error})") from None
    if devices < 1:
        raise QMInputError("engine 'gpu4pyscf' needs a CUDA GPU; cupy finds none")


def _on_host(array) -> np.ndarray:
    """A numpy copy of a numpy or cupy (``.get()``) array."""
    return np.asarray(array.get() if hasattr(array, "get") else array, dtype=np.float64)


class TBLiteEngine:
    """Extended tight binding (GFN2-xTB, GFN1-xTB) through tblite's Python interface."""

    def __init__(self, settings: QMSettings) -> None:
        import tblite.interface  # noqa: F401

        self.settings = settings

    def version(self) -> str:
        from importlib import metadata

        return metadata.version("tblite")

    def label(self, numbers: np.ndarray, positions_nm: np.ndarray) -> QMLabel:
        from tblite.exceptions import TBLiteRuntimeError
        from tblite.interface import Calculator

        s = self.settings
        start = time.perf_counter()
        bohr = np.asarray(positions_nm, dtype=np.float64) / NM_PER_BOHR
        calculator = Calculator(
            s.method, np.asarray(numbers, dtype=np.int32), bohr, charge=float(s.charge),
            uhf=s.multiplicity - 1,
        )
        calculator.set("verbosity", 0)
        calculator.set("max-iter", s.max_cycle)
        calculator.set("accuracy", max(s.conv_tol / 1e-6, 1e-4))  # tblite's accuracy 1 ~ 1e-6 hartree
        try:
            result = calculator.singlepoint()
        except TBLiteRuntimeError:
            return _not_converged(s.max_cycle, time.perf_counter() - start)
        return QMLabel(
            True, float(result.get("energy")) * KJ_PER_MOL_PER_HARTREE,
            np.asarray(result.get("gradient")) * _FORCE_PER_GRADIENT, -1, time.perf_counter() - start,
        )  # fmt: skip


def _not_converged(cycles: int, seconds: float) -> QMLabel:
    return QMLabel(False, float("nan"), np.zeros((0, 3)), cycles, seconds)


def engine_for(settings: QMSettings) -> QMEngine:
    """The engine ``settings`` names; ImportError (with what to install) when its package is missing."""
    try:
        if settings.engine == "tblite":
            return TBLiteEngine(settings)
        return PySCFEngine(settings, gpu=settings.engine == "gpu4pyscf")
    except ImportError as error:
        package = PACKAGES[settings.engine]
        message = f"engine {settings.engine!r} needs the {package} package: pip install {package} ({error})"
        raise QMInputError(message) from None
