"""The ASE calculator: a gnnmd model behind ``atoms.calc``, in ASE units (eV, Å).

Energy, forces and stress come from one model evaluation and one backward
pass. The model works in nm and kJ/mol; conversion happens only here, through
:mod:`gnnmd.units`:

- energy: E [eV] = E [kJ/mol] / (kJ/mol per eV);
- forces: F = -∂E/∂r, converted from kJ/mol/nm to eV/Å;
- stress (3-D periodic cells only): σ = (1/V) ∂E/∂ε at ε = 0, where a symmetric
  strain ε deforms positions and cell together, r → r (I + ε) and
  h → h (I + ε) (rows of h are the cell vectors). This is ASE's convention
  (positive under tension, Voigt order xx, yy, zz, yz, xz, xy; eV/Å³): the same
  number that ``calculate_numerical_stress`` estimates by finite differences.
  ∂E/∂ε comes from autograd on a zero strain tensor, so it is exact.

Results are cached as ASE does it: a property is recomputed only when
``check_state`` reports a change (positions, numbers, cell, pbc, and, for CG
``Atoms``, bead types or bonds). For 3-D periodic ``Atoms`` the stress is
computed with every energy, since it costs one more gradient only.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import (
    CalculationFailed,
    Calculator,
    CalculatorSetupError,
    PropertyNotImplementedError,
    all_changes,
)
from ase.stress import full_3x3_to_voigt_6_stress

from gnnmd.ase.convert import (
    BEAD_TYPES_ARRAY,
    BONDS_INFO,
    ModelInput,
    atom_bonds,
    atom_types,
    atoms_topology,
    model_input,
    restore_cg,
)
from gnnmd.errors import AtomsError, GnnmdError, SimulationError
from gnnmd.models import load_model
from gnnmd.nn.potential import CGPotential
from gnnmd.topology import CGTopology, is_element_model
from gnnmd.units import energy_to_kj_per_mol, force_to_kj_per_mol_nm

KJ_PER_MOL_PER_EV = energy_to_kj_per_mol("eV")
KJ_PER_MOL_NM_PER_EV_ANGSTROM = force_to_kj_per_mol_nm("eV", "angstrom")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Properties :meth:`GNNMDCalculator.calculate_batch` can return.
BATCH_PROPERTIES = ("energy", "free_energy", "forces", "stress")


class StressUnavailableError(AtomsError, PropertyNotImplementedError):
    """Stress was asked for ``Atoms`` that are not periodic in all three directions."""


class DeviceUnavailableError(GnnmdError, CalculatorSetupError):
    """An explicitly requested torch device does not exist on this machine."""


class NonFiniteEnergyError(SimulationError, CalculationFailed):
    """The model returned a NaN or infinite energy (e.g. atoms on top of each other)."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; a missing GPU raises.

    Raises:
        ValueError: not a device name.
        DeviceUnavailableError: CUDA (or the numbered GPU) was asked for and is not there.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'") from error
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index is not None and resolved.index >= count):
            raise DeviceUnavailableError(
                f"device {device!r} was requested but this machine has {count} CUDA device(s); "
                "use device='cpu' or device='auto'"
            )
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``torch.float32`` or ``"float64"``/``torch.float64``; anything else raises ValueError."""
    if dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype {dtype!r} is not one of {list(DTYPES)}")


def resolve_model(
    model: str | os.PathLike | CGPotential, device: torch.device, dtype: torch.dtype
) -> tuple[CGPotential, str]:
    """(the model on ``device`` in ``dtype``, its label); a CGPotential passed in is never modified."""
    if isinstance(model, CGPotential):
        label = str(getattr(model, "metadata", {}).get("name", "<CGPotential>"))
        tensors = [*model.parameters(), *model.buffers()]
        if all(t.device == device and (t.dtype == dtype or not t.is_floating_point()) for t in tensors):
            return model, label
        return copy.deepcopy(model).to(device=device, dtype=dtype), label
    if isinstance(model, (str, os.PathLike)):
        return load_model(model).to(device=device, dtype=dtype), str(model)  # warns if untrained
    raise TypeError(
        f"model must be a shipped model name, a checkpoint path or a CGPotential, got {type(model).__name__}"
    )


class GNNMDCalculator(Calculator):
    """A gnnmd potential as an ASE calculator (eV, Å).

    Usage::

        from gnnmd.ase import GNNMDCalculator, pdb_atoms

        atoms = pdb_atoms("ala2.pdb")
        atoms.calc = GNNMDCalculator(model="ala2-allatom")
        atoms.get_potential_energy(), atoms.get_forces()   # eV, eV/Å

    All-atom models (types are element symbols) read ``atoms.numbers``; CG
    models read bead types and bonds carried on the Atoms (build them with
    :func:`gnnmd.ase.cg_atoms`). See :mod:`gnnmd.ase.convert`.

    Args:
        model: a shipped model name (``gnnmd models``), a checkpoint path, or a
            :class:`~gnnmd.nn.potential.CGPotential` (used as is when already on
            ``device`` in ``dtype``, else converted as a copy).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``; an explicitly requested GPU that is missing raises
            :class:`DeviceUnavailableError`.
        dtype: ``"float64"`` (default: accurate finite differences and energy
            conservation) or ``"float32"`` (faster on GPUs).
        label, atoms, directory: as for any ASE calculator.

    Properties: ``energy`` and ``free_energy`` (eV, equal: the model has no
    electronic entropy), ``forces`` (n, 3) eV/Å, ``stress`` (6,) eV/Å³ in Voigt
    order for 3-D periodic cells.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    default_parameters = {"device": "auto", "dtype": "float64"}

    def __init__(
        self,
        model: str | os.PathLike | CGPotential,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float64",
        label: str | None = None,
        atoms: Atoms | None = None,
        directory: str | os.PathLike = ".",
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model, self.model_label = resolve_model(model, self.device, self.dtype)
        self.element_model = is_element_model(self.model.vocabulary)
        self._packed: tuple[tuple, CGTopology, object] | None = None
        super().__init__(label=label, atoms=atoms, directory=directory)
        self.parameters.update(model=self.model_label, device=str(self.device), dtype=str(self.dtype)[6:])

    def set(self, **kwargs) -> dict:
        """Parameters are fixed at construction: any keyword raises (make a new calculator instead)."""
        if kwargs:
            raise ValueError(
                f"GNNMDCalculator parameters {sorted(kwargs)} cannot be changed after construction; "
                "create a new GNNMDCalculator"
            )
        return {}

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's system changes, plus ``bead_types`` and ``bead_bonds`` when those differ."""
        changes = super().check_state(atoms, tol)
        if self.atoms is None:
            return changes
        old_types, new_types = self.atoms.arrays.get(BEAD_TYPES_ARRAY), atoms.arrays.get(BEAD_TYPES_ARRAY)
        if (old_types is None) != (new_types is None) or (
            old_types is not None and not np.array_equal(old_types, new_types)
        ):
            changes.append("bead_types")
        old_bonds, new_bonds = self.atoms.info.get(BONDS_INFO), atoms.info.get(BONDS_INFO)
        if (old_bonds is None) != (new_bonds is None) or (
            old_bonds is not None and not np.array_equal(old_bonds, new_bonds)
        ):
            changes.append("bead_bonds")
        return changes

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Compute energy, free energy, forces (and stress for 3-D periodic cells) into ``self.results``."""
        super().calculate(atoms, properties, system_changes)
        if "stress" in properties:
            require_periodic(self.atoms)
        item = self._model_input(self.atoms)
        self.results = self._evaluate([item], stress=item.box_nm is not None)[0]

    def calculate_batch(
        self,
        images: Sequence[Atoms],
        properties: Sequence[str] = ("energy", "forces"),
        chunk_size: int | None = None,
    ) -> list[dict]:
        """Evaluate many structures with one model call per chunk (screening, data labelling).

        Structures of any sizes and compositions are packed into one graph batch.
        Open-space and periodic structures are evaluated in separate calls. The
        calculator's own cache (``results``, ``atoms``) is left untouched.

        Args:
            images: ASE Atoms, each as a single calculation would take it.
            properties: any of ``energy``, ``free_energy``, ``forces``, ``stress``
                (stress needs every image 3-D periodic).
            chunk_size: at most this many images per model call (default: all at once).
        Returns:
            One dict per image, in order: ``energy``/``free_energy`` float eV,
            ``forces`` (n, 3) eV/Å, ``stress`` (6,) eV/Å³.
        """
        unknown = sorted(set(properties) - set(BATCH_PROPERTIES))
        if unknown:
            raise ValueError(f"unknown properties {unknown}; allowed: {list(BATCH_PROPERTIES)}")
        if chunk_size is not None and (
            not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        if "stress" in properties:
            for atoms in images:
                require_periodic(atoms)
        inputs = self._model_inputs(images)
        results: list[dict | None] = [None] * len(inputs)
        for periodic in (False, True):
            group = [i for i, item in enumerate(inputs) if (item.box_nm is not None) == periodic]
            step = chunk_size or max(len(group), 1)
            for start in range(0, len(group), step):
                chosen = group[start : start + step]
                evaluated = self._evaluate([inputs[i] for i in chosen], stress=periodic)
                for index, result in zip(chosen, evaluated, strict=True):
                    results[index] = {key: result[key] for key in properties}
        return results

    # -- Atoms -> model inputs ----------------------------------------------------

    def _topology(self, atoms: Atoms) -> tuple[tuple, CGTopology]:
        if not self.element_model:
            restore_cg(atoms)  # frames re-read from a trajectory or PDB file
        types = atom_types(atoms, self.model.vocabulary, self.model_label)
        if self.element_model:  # every pair inside the cutoff: bonds play no part
            bonds = np.zeros((0, 2), dtype=np.int64)
        else:
            bonds = atom_bonds(atoms, required=self.model.use_priors, model_name=self.model_label)
        key = (types, bonds.tobytes())
        if self._packed is not None and self._packed[0] == key:
            return key, self._packed[1]
        return key, atoms_topology(atoms, types, bonds)

    def _model_input(self, atoms: Atoms) -> ModelInput:
        key, topology = self._topology(atoms)
        item = model_input(atoms, topology, self.model.cutoff_nm)
        if self._packed is None or self._packed[0] != key:
            # Packing lists every candidate pair: do it only when the types or bonds change.
            self._packed = (key, topology, self.model.pack([topology], self.device))
        return item

    def _model_inputs(self, images: Sequence[Atoms]) -> list[ModelInput]:
        # Structures with the same types and bonds share one topology object, so pack() resolves it once.
        shared: dict[tuple, CGTopology] = {}
        inputs = []
        for atoms in images:
            key, topology = self._topology(atoms)
            topology = shared.setdefault(key, topology)
            inputs.append(model_input(atoms, topology, self.model.cutoff_nm))
        return inputs

    # -- the model call -------------------------------------------------------------

    def _evaluate(self, inputs: list[ModelInput], stress: bool) -> list[dict]:
        """Energies, forces (and stresses) of ``inputs`` from one model call, in ASE units and frame."""
        if len(inputs) == 1 and self._packed is not None and inputs[0].topology is self._packed[1]:
            batch = self._packed[2]
        else:
            batch = self.model.pack([item.topology for item in inputs], self.device)
        energy, gradient, strain_gradient = self._energy_and_gradients(inputs, batch, stress)
        ptr = batch.ptr.cpu().numpy()
        check_finite_results(energy, gradient, ptr, self.model_label)
        results = []
        for g, item in enumerate(inputs):
            forces = -gradient[ptr[g] : ptr[g + 1]] @ item.rotation.T
            result = {
                "energy": energy[g] / KJ_PER_MOL_PER_EV,
                "free_energy": energy[g] / KJ_PER_MOL_PER_EV,
                "forces": forces / KJ_PER_MOL_NM_PER_EV_ANGSTROM,
            }
            if strain_gradient is not None:
                derivative = item.rotation @ strain_gradient[g] @ item.rotation.T / KJ_PER_MOL_PER_EV
                result["stress"] = full_3x3_to_voigt_6_stress(derivative / item.volume_a3)
            results.append(result)
        return results

    def _energy_and_gradients(
        self, inputs: list[ModelInput], batch, stress: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(E (G,) kJ/mol, ∂E/∂r (N, 3) kJ/mol/nm, ∂E/∂ε (G, 3, 3) kJ/mol or None), float64 numpy."""
        tensor = {"dtype": self.dtype, "device": self.device}
        positions = torch.as_tensor(np.concatenate([i.positions_nm for i in inputs]), **tensor)
        positions.requires_grad_(True)
        box = None
        if inputs[0].box_nm is not None:
            box = torch.as_tensor(np.stack([i.box_nm for i in inputs]), **tensor)
        strain, deformed, deformed_box = None, positions, box
        if stress and box is not None:
            strain = torch.zeros((len(inputs), 3, 3), requires_grad=True, **tensor)
            deformation = torch.eye(3, **tensor) + 0.5 * (strain + strain.transpose(1, 2))
            # r -> r (I + ε) per structure, and each cell vector likewise.
            deformed = torch.einsum("ni,nij->nj", positions, deformation[batch.graph_index])
            deformed_box = box @ deformation
        energy = self.model(deformed, batch, deformed_box)
        wanted = [positions] if strain is None else [positions, strain]
        gradients = torch.autograd.grad(energy.sum(), wanted, allow_unused=True)
        as_numpy = [
            (torch.zeros_like(w) if g is None else g).detach().double().cpu().numpy()
            for w, g in zip(wanted, gradients, strict=True)
        ]
        strain_gradient = as_numpy[1] if strain is not None else None
        return energy.detach().double().cpu().numpy(), as_numpy[0], strain_gradient


def require_periodic(atoms: Atoms) -> None:
    """Raise StressUnavailableError unless ``atoms`` is periodic in all three directions."""
    if not np.asarray(atoms.pbc, dtype=bool).all():
        raise StressUnavailableError(
            f"stress needs a 3-D periodic cell (pbc all True), got pbc={np.asarray(atoms.pbc).tolist()}; "
            "set atoms.cell and atoms.pbc = True, or ask only for energy and forces"
        )


def check_finite_results(energy: np.ndarray, gradient: np.ndarray, ptr: np.ndarray, model: str) -> None:
    """Raise NonFiniteEnergyError naming the first structure whose energy or forces are not finite.

    ``energy`` (G,) kJ/mol, ``gradient`` (N, 3) kJ/mol/nm, ``ptr`` (G+1,) the batch's CSR pointer.
    """
    finite = np.isfinite(energy) & np.array(
        [np.isfinite(gradient[ptr[g] : ptr[g + 1]]).all() for g in range(len(energy))], dtype=bool
    )
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise NonFiniteEnergyError(
            f"model {model} gave a non-finite energy or force for structure {bad} "
            f"(energy {energy[bad]} kJ/mol); atoms may overlap"
        )
