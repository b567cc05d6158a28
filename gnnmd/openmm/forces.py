"""The two OpenMM forces that carry a gnnmd potential.

=========  ===============================  =============================================
route      force                            evaluates
=========  ===============================  =============================================
"torch"    ``openmmtorch.TorchForce``       the exported TorchScript module, in OpenMM's
                                            C++ (no Python per step; survives XML)
"python"   ``openmm.PythonForce``           the model object in this Python process
                                            (eager, or any backend TorchScript cannot hold)
=========  ===============================  =============================================

Both compute the same function: energy in kJ/mol and forces in kJ/mol/nm of
particle positions in nm, the R replicas of one topology packed as R graphs and
evaluated in one model call. With a periodic box the model gets the box vectors
(minimum image for every pair, bonded terms included).
"""

from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import openmm
import openmm.unit
import torch

from gnnmd.errors import BeadTypeError, CheckpointError, SimulationError
from gnnmd.export import METADATA_FILE, export_potential, exported_metadata, metadata_member
from gnnmd.graph import GraphBatch
from gnnmd.nn.potential import CGPotential
from gnnmd.openmm.platforms import import_openmmtorch
from gnnmd.topology import CGTopology

#: Name given to the force in the System (``Force.getName()``).
FORCE_NAME = "gnnmd"


def model_label(model: CGPotential | str) -> str:
    """The model's file (or ``"<memory>"``; an exported file's path as is), for messages."""
    if isinstance(model, str):
        return model
    return str(getattr(model, "source", "<memory>"))


def pack_replicas(model: CGPotential, topology: CGTopology, replicas: int) -> GraphBatch:
    """``replicas`` copies of ``topology`` packed for ``model``; BeadTypeError names the model file."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"replicas must be an integer >= 1, got {replicas!r}")
    try:
        return model.pack([topology] * replicas)
    except BeadTypeError as error:
        raise BeadTypeError(
            f"model {model_label(model)} (vocabulary of {len(model.vocabulary)} bead types) does not fit "
            f"system {topology.name!r}: {error}"
        ) from error


def check_box(box_nm: np.ndarray, cutoff_nm: float, where: str) -> np.ndarray:
    """(3, 3) float64 box vectors (rows, nm) after checking they hold a cutoff of ``cutoff_nm``.

    OpenMM's reduced form is required (a along x, b in the xy plane); the
    narrowest width must be at least twice the cutoff (minimum image).
    """
    box = np.asarray(box_nm, dtype=np.float64)
    if box.shape != (3, 3) or not np.all(np.isfinite(box)):
        raise ValueError(
            f"{where}: box_nm must be a finite (3, 3) array of box vectors in nm, got {box_nm!r}"
        )
    if box[0, 1] or box[0, 2] or box[1, 2] or np.any(np.diag(box) <= 0):
        raise ValueError(
            f"{where}: box_nm {box.tolist()} is not in OpenMM's reduced form (a along x, b in xy)"
        )
    narrowest = float(np.diag(box).min())
    if narrowest < 2.0 * cutoff_nm:
        raise ValueError(
            f"{where}: periodic box too small: narrowest width {narrowest:g} nm is less than twice the "
            f"model cutoff {cutoff_nm:g} nm"
        )
    return box


# ----------------------------------------------------------------------------- TorchForce


def torch_force(
    model: CGPotential,
    topology: CGTopology,
    replicas: int = 1,
    dtype: torch.dtype = torch.float32,
    periodic: bool = False,
    subset: tuple[list[int], int] | None = None,
) -> openmm.Force:
    """A TorchForce running ``model`` on ``replicas`` copies of ``topology`` (module built in memory).

    The module returns (energy kJ/mol, forces (N, 3) kJ/mol/nm) for positions
    (N, 3) nm, N = replicas × n_beads; it is embedded in the force, so an XML
    file of the System carries it. With ``subset`` = (particle indices, System
    particles) it acts on those particles of a larger System only.
    """
    openmmtorch = import_openmmtorch()
    pack_replicas(model, topology, replicas)  # the clear error for a vocabulary mismatch
    # export_potential casts the module it is given in place: hand it a copy.
    module = export_potential(_copy_model(model), topology, replicas, forces=True, dtype=dtype, subset=subset)
    force = openmmtorch.TorchForce(module)
    force.setOutputsForces(True)
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setName(FORCE_NAME)
    return force


def is_exported_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive written by ``gnnmd export``."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return metadata_member(archive) is not None


def _check_exported(path: Path, metadata: dict[str, Any], topology: CGTopology, replicas: int) -> None:
    """Refuse an exported file made for another system or replica count, naming the field."""
    expected = {
        "bead_types": list(topology.bead_types),
        "replicas": replicas,
        "particles": topology.n_beads * replicas,
    }
    for field, value in expected.items():
        if field not in metadata:
            raise CheckpointError(f"{path}: field {field!r} missing from {METADATA_FILE}")
        if metadata[field] != value:
            found = metadata[field]
            if field == "bead_types":
                found, value = _describe_type_mismatch(found, value, metadata.get("system"), topology.name)
            raise BeadTypeError(f"{path}: field {field!r} is {found}, but the OpenMM system needs {value}")


def _describe_type_mismatch(
    found: list, wanted: list, found_system: Any, wanted_system: str
) -> tuple[str, str]:
    differing = [i for i, (a, b) in enumerate(zip(found, wanted, strict=False)) if a != b]
    first = differing[0] if differing else min(len(found), len(wanted))
    at = f"bead {first}: {found[first]!r}" if first < len(found) else f"bead {first}: missing"
    return (
        f"{len(found)} beads of system {found_system!r} (first difference at {at})",
        f"{len(wanted)} beads of system {wanted_system!r}",
    )


def torch_force_from_file(
    path: str | os.PathLike, topology: CGTopology, replicas: int = 1, periodic: bool = False
) -> openmm.Force:
    """A TorchForce from a ``gnnmd export`` file, after checking it fits ``topology`` × ``replicas``.

    Raises:
        BeadTypeError: the file was exported for other bead types or another replica count.
        CheckpointError: the file is not a gnnmd export.
    """
    path = Path(path)
    if not is_exported_file(path):
        raise CheckpointError(
            f"{path}: not a TorchScript file written by `gnnmd export` (no {METADATA_FILE})"
        )
    metadata = exported_metadata(path)
    _check_exported(path, metadata, topology, replicas)
    if metadata.get("ops"):  # the module calls gnnmd's registered ops: load them first
        from gnnmd.kernels import ops

        ops.load()
    openmmtorch = import_openmmtorch()
    force = openmmtorch.TorchForce(str(path))
    force.setOutputsForces(bool(metadata.get("outputs_forces", False)))
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setName(FORCE_NAME)
    return force


# ----------------------------------------------------------------------------- PythonForce


class ModelEvaluator:
    """The callable behind the PythonForce: an OpenMM State in, (energy, forces) out.

    Positions arrive from OpenMM in nm (float64), are cast to the model's dtype
    on its device, and the forces go back as a (N, 3) float64 array in kJ/mol/nm;
    the energy is a float in kJ/mol. A non-finite energy raises SimulationError
    (OpenMM reports it as an OpenMMException carrying this message). It pickles
    (model and batch included), so a System holding it can be serialized.

    Args:
        model: the potential, already on ``device`` in the dtype to run.
        batch: the packed replicas.
        label: ``"<model> on <system> x R"``, for error messages.
        cutoff_nm: checked against the box when the force is periodic.
    """

    def __init__(self, model: CGPotential, batch: GraphBatch, label: str, cutoff_nm: float) -> None:
        self.model = model
        self.batch = batch
        self.label = label
        self.cutoff_nm = cutoff_nm
        self.periodic = False
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.num_graphs = int(batch.ptr.shape[0] - 1)

    def _box(self, state: openmm.State) -> Optional[torch.Tensor]:
        if not self.periodic:
            return None
        box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        box = check_box(box, self.cutoff_nm, self.label)
        return torch.as_tensor(box, dtype=self.dtype, device=self.device).expand(self.num_graphs, 3, 3)

    def __call__(self, state: openmm.State) -> tuple[float, np.ndarray]:
        """Energy (kJ/mol) and forces ((N, 3) kJ/mol/nm) at the State's positions (nm)."""
        positions = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
        x = torch.as_tensor(np.asarray(positions), dtype=self.dtype, device=self.device)
        energies, forces = self.model.energy_and_forces(x, self.batch, self._box(state))
        energy = float(energies.sum())
        if not np.isfinite(energy):
            raise SimulationError(
                f"gnnmd: {self.label} returned a non-finite energy ({energy} kJ/mol); per replica: "
                f"{energies.tolist()[:8]}{' ...' if self.num_graphs > 8 else ''}"
            )
        return energy, forces.detach().to("cpu", torch.float64).numpy()


def python_force(
    model: CGPotential,
    topology: CGTopology,
    replicas: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    periodic: bool = False,
) -> openmm.Force:
    """An ``openmm.PythonForce`` evaluating ``model`` on ``replicas`` copies of ``topology`` in-process.

    The model is copied to ``device`` and ``dtype`` (the caller's model is left
    as it was). Positions (N, 3) nm in, energy kJ/mol and forces kJ/mol/nm out.
    """
    if not hasattr(openmm, "PythonForce"):
        raise RuntimeError(f"openmm.PythonForce needs OpenMM >= 8.5.2; this is OpenMM {openmm.__version__}")
    batch = pack_replicas(model, topology, replicas)
    label = f"model {model_label(model)} on {topology.name} x {replicas}"
    local = _copy_model(model).to(device=device, dtype=dtype).eval()
    evaluator = ModelEvaluator(local, _batch_to(batch, device), label, float(model.cutoff_nm))
    evaluator.periodic = periodic
    force = openmm.PythonForce(evaluator)
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setName(FORCE_NAME)
    return force


def _copy_model(model: CGPotential) -> CGPotential:
    """A deep copy, so that moving it to another dtype/device leaves the caller's model alone."""
    return copy.deepcopy(model)


def _batch_to(batch: GraphBatch, device: torch.device | str) -> GraphBatch:
    return GraphBatch(*(tensor.to(device) for tensor in batch))
