"""TorchScript export for openmm-torch's ``TorchForce`` (nm in, kJ/mol out).

The exported module bakes in one system's bead types and bonded topology
(optionally R non-interacting replicas of it) and has the signature
openmm-torch expects::

    forward(positions: (N, 3) nm, box: Optional[(3, 3) nm] = None) -> energy () kJ/mol
    # with forces=True:  -> (energy () kJ/mol, forces (N, 3) kJ/mol/nm)

``box`` is passed by TorchForce when ``setUsesPeriodicBoundaryConditions(True)``;
the cutoff must then be at most half the box's smallest width. Positions may
arrive in float32 or float64 and are cast to the model's dtype. Provenance
(model, system, replicas, trained or not) is stored in the file as
``gnnmd.json`` and read back by :func:`exported_metadata`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from gnnmd.graph import GraphBatch
from gnnmd.models import is_trained
from gnnmd.nn.potential import CGPotential
from gnnmd.topology import CGTopology

METADATA_FILE = "gnnmd.json"


class ExportedEnergy(nn.Module):
    """A potential bound to one packed batch; returns the total energy (kJ/mol)."""

    def __init__(self, potential: CGPotential, batch: GraphBatch) -> None:
        super().__init__()
        self.potential = potential
        self.register_buffer("types", batch.types)
        self.register_buffer("ptr", batch.ptr)
        self.register_buffer("graph_index", batch.graph_index)
        self.register_buffer("bonds", batch.bonds)
        self.register_buffer("angles", batch.angles)
        self.register_buffer("dihedrals", batch.dihedrals)
        self.register_buffer("pairs", batch.pairs)
        self.register_buffer("residues", batch.residues)
        # Carries the model dtype through .to()/.double(); inputs are cast to it.
        self.register_buffer("dtype_reference", torch.zeros(0))
        self.num_graphs = int(batch.ptr.shape[0] - 1)
        self.num_particles = int(batch.types.shape[0])
        self.cutoff_nm = float(potential.cutoff_nm)

    def batch(self) -> GraphBatch:
        return GraphBatch(self.types, self.ptr, self.graph_index, self.bonds, self.angles, self.dihedrals,
                          self.pairs, self.residues)  # fmt: skip

    def boxes(self, box: Optional[Tensor]) -> Optional[Tensor]:
        """(3, 3) nm box -> (G, 3, 3), after checking the cutoff fits in it."""
        if box is None:
            return None
        box = box.to(self.dtype_reference.dtype)
        narrowest = float(torch.diagonal(box).min())
        if 2.0 * self.cutoff_nm > narrowest:
            raise ValueError("periodic box too small: its narrowest width must be at least twice the cutoff")
        return box.expand(self.num_graphs, 3, 3)

    def checked(self, positions: Tensor) -> Tensor:
        """``positions`` in the model's dtype, after checking there is one per exported particle."""
        if positions.dim() != 2 or positions.shape[0] != self.num_particles or positions.shape[1] != 3:
            raise ValueError(
                "this module was exported for "
                + str(self.num_particles)
                + " particles ("
                + str(self.num_graphs)
                + " replica(s)); it got positions of shape "
                + str(positions.shape)
                + ": export it for this system (gnnmd export --system ... --replicas ...)"
            )
        return positions.to(self.dtype_reference.dtype)

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """positions (N, 3) nm, box optional (3, 3) nm -> energy () kJ/mol."""
        x = self.checked(positions)
        return self.potential(x, self.batch(), self.boxes(box)).sum()


class ExportedEnergyForces(ExportedEnergy):
    """As :class:`ExportedEnergy`, also returning forces (for ``setOutputsForces(True)``)."""

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        """positions (N, 3) nm -> (energy () kJ/mol, forces (N, 3) kJ/mol/nm)."""
        return self.energy_forces(positions, box)

    def energy_forces(self, positions: Tensor, box: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        x = self.checked(positions.detach()).requires_grad_(True)
        energy = self.potential(x, self.batch(), self.boxes(box)).sum()
        gradient = torch.autograd.grad([energy], [x], allow_unused=True)[0]
        if gradient is None:
            gradient = torch.zeros_like(x)
        return energy, -gradient


class ExportedSubsetForces(ExportedEnergyForces):
    """The potential on a subset of a larger System's particles (openmm-ml's ``createMixedSystem``).

    Takes the positions (M, 3) nm of all M particles, evaluates the model on
    ``particles`` (in that order) and returns forces (M, 3) kJ/mol/nm that are
    zero on every other particle.
    """

    def __init__(self, potential: CGPotential, batch: GraphBatch, particles: Tensor, total: int) -> None:
        super().__init__(potential, batch)
        self.register_buffer("particles", particles)
        self.total = int(total)

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        """positions (M, 3) nm -> (energy () kJ/mol of the subset, forces (M, 3) kJ/mol/nm)."""
        if positions.shape[0] != self.total:
            raise ValueError(
                "this module acts on "
                + str(self.num_particles)
                + " of "
                + str(self.total)
                + " particles; it got positions of shape "
                + str(positions.shape)
            )
        energy, forces = self.energy_forces(positions[self.particles], box)
        everything = torch.zeros(positions.shape, dtype=forces.dtype, device=forces.device)
        return energy, everything.index_copy(0, self.particles, forces)


def export_potential(
    model: CGPotential,
    topology: CGTopology,
    replicas: int = 1,
    forces: bool = False,
    dtype: torch.dtype = torch.float32,
    subset: Optional[Tuple[Sequence[int], int]] = None,
) -> torch.jit.ScriptModule:
    """A TorchScript module of ``model`` bound to ``replicas`` copies of ``topology``.

    Bead i of replica r is particle r * n_beads + i. With ``subset`` = (particle
    indices, total particles) the module takes all the System's positions and acts on
    those particles only (forces are returned; see :class:`ExportedSubsetForces`).
    Raises BeadTypeError when the model does not cover the topology.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    batch = model.pack([topology] * replicas)
    # A copy: casting the wrapper to ``dtype`` must not change the caller's model.
    potential = copy.deepcopy(model)
    if subset is not None:
        particles, total = torch.as_tensor(list(subset[0]), dtype=torch.int64), int(subset[1])
        if len(particles) != batch.types.shape[0] or len(set(particles.tolist())) != len(particles):
            raise ValueError(f"subset: {len(particles)} particles given; one distinct one per bead needed")
        if len(particles) and not (0 <= int(particles.min()) and int(particles.max()) < total):
            raise ValueError(f"subset: particle indices must lie in [0, {total})")
        wrapper: nn.Module = ExportedSubsetForces(potential, batch, particles, total)
    else:
        wrapper = (ExportedEnergyForces if forces else ExportedEnergy)(potential, batch)
    return torch.jit.script(wrapper.to(dtype).eval())


def save_exported(
    model: CGPotential,
    topology: CGTopology,
    path: str | os.PathLike,
    replicas: int = 1,
    forces: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Export (see :func:`export_potential`) and write to ``path`` with provenance metadata."""
    module = export_potential(model, topology, replicas, forces, dtype)
    metadata = {
        "model": getattr(model, "source", "<memory>"),
        "trained": is_trained(model),
        "system": topology.name,
        "beads_per_replica": topology.n_beads,
        "replicas": replicas,
        "particles": topology.n_beads * replicas,
        "outputs_forces": forces,
        "dtype": str(dtype).replace("torch.", ""),
        "units": {"positions": "nm", "energy": "kJ/mol", "forces": "kJ/mol/nm"},
        "bead_types": list(topology.bead_types),
        "masses_amu": [float(m) for m in topology.masses_amu],
        **kernel_provenance(model),
    }
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    torch.jit.save(module, str(temporary), _extra_files={METADATA_FILE: json.dumps(metadata)})
    os.replace(temporary, path)
    return path


def kernel_provenance(model: CGPotential) -> dict:
    """What an exported module runs, and the op library a loading process needs (None: none)."""
    from gnnmd.kernels import ops
    from gnnmd.nn.backends import backend_of, implementation_of

    implementation = implementation_of(model, "cpu")
    needs_ops = implementation == "native-cpu"
    return {
        "backend": backend_of(model),
        "implementation": implementation,
        "ops": list(ops.OPS) if needs_ops else [],
        "ops_library": str(ops.library_path()) if needs_ops else None,
    }


def required_ops(model: CGPotential | str | os.PathLike) -> list[str]:
    """The gnnmd ops a model, or an exported file (by its metadata), needs loaded in the process."""
    if isinstance(model, (str, os.PathLike)):
        return list(exported_metadata(model).get("ops", []))
    return kernel_provenance(model)["ops"]


def metadata_member(archive) -> str | None:
    """The name of :data:`METADATA_FILE` inside an open TorchScript zip archive, or None."""
    return next((n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")), None)


def exported_metadata(path: str | os.PathLike) -> dict:
    """The provenance stored in an exported file by :func:`save_exported`."""
    import zipfile

    # Read from the archive itself: loading the module would need its ops registered first.
    with zipfile.ZipFile(path) as archive:
        member = metadata_member(archive)
        extra = {METADATA_FILE: archive.read(member).decode() if member else ""}
    if not extra[METADATA_FILE]:
        raise ValueError(f"{path}: no {METADATA_FILE} in this TorchScript file (not written by gnnmd export)")
    return json.loads(extra[METADATA_FILE])
